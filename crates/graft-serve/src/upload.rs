//! The images of a prediction request: multipart file fields or the raw body, read within
//! the body limit, and the API's errors for images that cannot be decoded.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use graft_data::decode::DecodeError;

use crate::ApiError;

/// One uploaded image: a name for messages and its bytes.
pub(crate) struct Upload {
    pub name: String,
    pub bytes: Bytes,
}

pub(crate) const CONTENT_TYPES: &str = "send the image as multipart/form-data (field \"image\"), or as the raw \
     request body with Content-Type image/jpeg, image/png, image/webp, … or application/octet-stream";

/// The images of a request: multipart file fields, or the raw body.
///
/// The whole body is read first (up to the body limit) whatever follows: an answer sent before
/// the body is read makes the server close the connection, which keep-alive clients see as a
/// failed next request.
pub(crate) async fn uploads(
    req: Request,
    max: usize,
    max_body: usize,
) -> Result<Vec<Upload>, ApiError> {
    // The boundary parameter is case-sensitive: lower-case only a copy for matching.
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let lower = ctype.as_deref().map(str::to_ascii_lowercase);
    let body = read_body(req.into_body(), max_body).await?;
    let single = |bytes: Bytes| {
        vec![Upload {
            name: "body".into(),
            bytes,
        }]
    };
    match lower.as_deref() {
        Some(c) if c.starts_with("multipart/form-data") => {
            multipart_files(ctype.as_deref().unwrap_or(c), body, max).await
        }
        None => Ok(single(body)),
        Some(c) if c.starts_with("image/") || c.starts_with("application/octet-stream") => {
            Ok(single(body))
        }
        Some(c) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!("Content-Type {c} is not accepted; {CONTENT_TYPES}"),
        )),
    }
}

/// How much of an oversized body is read and dropped so the client receives its 413 (a server
/// that stops reading and closes makes the client fail writing, before it sees any answer).
const DRAIN_LIMIT: usize = 64 << 20;

/// The request body, at most `limit` bytes.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("bad_body", format!("reading the request body: {e}"))
        })?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else {
            buf = Vec::new();
            if seen > limit + DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is over the {:.1} MB limit; send a smaller image \
                 (about 1000 px on the long side is plenty)",
                limit as f64 / (1 << 20) as f64
            ),
        ));
    }
    Ok(Bytes::from(buf))
}

/// The file fields of a multipart/form-data body: fields with a filename, or named
/// image(s)/file(s).
async fn multipart_files(ctype: &str, body: Bytes, max: usize) -> Result<Vec<Upload>, ApiError> {
    let bad = |why: String| ApiError::bad_request("bad_multipart", why);
    let boundary = multer::parse_boundary(ctype)
        .map_err(|e| bad(format!("{e}; let the HTTP client build the multipart body")))?;
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(body)));
    let mut form = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart body: {e}")))?
    {
        let is_file = field.file_name().is_some()
            || matches!(field.name(), Some("image" | "images" | "file" | "files"));
        if !is_file {
            continue;
        }
        let name = field
            .file_name()
            .or(field.name())
            .unwrap_or("image")
            .to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("malformed multipart body: {e}")))?;
        out.push(Upload { name, bytes });
    }
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "no_image",
            format!("the form has no file field; {CONTENT_TYPES}"),
        ));
    }
    if out.len() > max {
        return Err(ApiError::bad_request(
            "too_many_images",
            format!("at most {max} images per request"),
        ));
    }
    Ok(out)
}

pub(crate) fn decode_error(name: &str, e: &DecodeError) -> ApiError {
    let (status, code) = match e {
        DecodeError::Empty => (StatusCode::BAD_REQUEST, "empty_image"),
        DecodeError::UnknownFormat => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_an_image"),
        DecodeError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_pixels"),
        DecodeError::Io(_) | DecodeError::Corrupt { .. } | DecodeError::ZeroSize => {
            (StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image")
        }
    };
    let hint = match e {
        DecodeError::Empty => "; the request carried no image bytes",
        DecodeError::UnknownFormat => "; send JPEG, PNG, WebP, BMP, GIF or TIFF",
        DecodeError::TooLarge { .. } => "; resize it before sending",
        _ => "; the file is damaged or cut short, send it again",
    };
    ApiError::new(status, code, format!("{name}: {e}{hint}"))
}
