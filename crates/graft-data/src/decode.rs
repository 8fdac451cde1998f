//! Decode any supported image file into 8-bit RGB, the one pixel format the rest of graft sees.
//!
//! The format is sniffed from the bytes, not trusted from the extension (phone exports often
//! save PNGs as `.jpg`). EXIF orientation is applied so a portrait phone photo stays upright.
//! Grey, grey+alpha, RGBA and 16-bit images are converted to RGB8 (alpha dropped).

use std::io::Cursor;
use std::path::Path;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("cannot read file: {0}")]
    Io(String),
    #[error("empty file (0 bytes)")]
    Empty,
    #[error(
        "not a recognised image format (content does not start like JPEG/PNG/BMP/WebP/GIF/TIFF)"
    )]
    UnknownFormat,
    #[error("corrupt or truncated {format} data: {why}")]
    Corrupt { format: String, why: String },
    #[error("image has zero width or height")]
    ZeroSize,
    #[error("image is {width}×{height} pixels; the limit is {max} megapixels")]
    TooLarge { width: u32, height: u32, max: u64 },
}

/// Read a file and decode it. Returns the raw bytes too, since callers hash them.
pub fn read_and_decode(path: &Path) -> Result<(Vec<u8>, RgbImage), DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::Io(e.to_string()))?;
    let img = decode_bytes(&bytes)?;
    Ok((bytes, img))
}

/// Decode bytes of any supported format into RGB8 with EXIF orientation applied.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    decode_bytes_limited(bytes, u64::MAX)
}

/// [`decode_bytes`], refusing images over `max_pixels` from their header alone, before any
/// pixel memory is allocated (a few KB of PNG can claim to be gigapixels).
pub fn decode_bytes_limited(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Io(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(DecodeError::UnknownFormat);
    };
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        format: format!("{format:?}").to_uppercase(),
        why: e.to_string(),
    };
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max: max_pixels / 1_000_000,
        });
    }
    // A broken EXIF block should not make a readable photo unusable: fall back to upright.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(DecodeError::ZeroSize);
    }
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// Resize RGB8 with a box (area-averaging) filter when shrinking, which neither aliases nor
/// sharpens; bilinear when enlarging.
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if img.width() == width && img.height() == height {
        return img.clone();
    }
    let out = resize_raw(
        img.as_raw(),
        img.width(),
        img.height(),
        width,
        height,
        fr::PixelType::U8x3,
    );
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// Resize a single-channel 8-bit buffer (see [`resize_rgb`] for the filter choice).
pub fn resize_gray(pixels: &[u8], w: u32, h: u32, width: u32, height: u32) -> Vec<u8> {
    resize_raw(pixels, w, h, width, height, fr::PixelType::U8)
}

fn resize_raw(
    pixels: &[u8],
    w: u32,
    h: u32,
    width: u32,
    height: u32,
    pt: fr::PixelType,
) -> Vec<u8> {
    let shrinking = width <= w && height <= h;
    let alg = if shrinking {
        fr::ResizeAlg::Convolution(fr::FilterType::Box)
    } else {
        fr::ResizeAlg::Convolution(fr::FilterType::Bilinear)
    };
    let src = fr::images::ImageRef::new(w, h, pixels, pt);
    let mut dst = fr::images::Image::new(width, height, pt);
    let ok = src.and_then(|src| {
        fr::Resizer::new()
            .resize(&src, &mut dst, &fr::ResizeOptions::new().resize_alg(alg))
            .map_err(|_| fr::ImageBufferError::InvalidBufferSize)
    });
    match ok {
        Ok(()) => dst.into_vec(),
        // Only reachable with an inconsistent buffer, which our callers never build.
        Err(_) => vec![0; (width * height) as usize * pt.size()],
    }
}

/// Luma (ITU-R BT.601 weights, integer arithmetic) of an RGB8 image.
pub fn to_gray(img: &RgbImage) -> Vec<u8> {
    img.pixels()
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(img: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encode");
        out
    }

    #[test]
    fn grey_rgba_and_16bit_become_rgb8() {
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([9])));
        let rgb = decode_bytes(&png_bytes(&grey)).expect("grey");
        assert_eq!(rgb.get_pixel(2, 1).0, [9, 9, 9]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            2,
            2,
            image::Rgba([1, 2, 3, 0]),
        ));
        assert_eq!(
            decode_bytes(&png_bytes(&rgba))
                .expect("rgba")
                .get_pixel(0, 0)
                .0,
            [1, 2, 3]
        );
        let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Rgb([65535u16, 0, 32896]),
        ));
        assert_eq!(
            decode_bytes(&png_bytes(&deep))
                .expect("16")
                .get_pixel(1, 1)
                .0,
            [255, 0, 128]
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert_eq!(decode_bytes(b""), Err(DecodeError::Empty));
        assert_eq!(
            decode_bytes(b"hello, I am text"),
            Err(DecodeError::UnknownFormat)
        );
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, image::Rgb([5, 6, 7])));
        let png = png_bytes(&img);
        for cut in [8, 20, 40, png.len() / 2, png.len() - 13] {
            assert!(decode_bytes(&png[..cut]).is_err(), "cut at {cut}");
        }
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
        jpeg.extend(std::iter::repeat_n(0x5Au8, 300));
        assert!(matches!(
            decode_bytes(&jpeg),
            Err(DecodeError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_pixel_limit_is_checked_from_the_header() {
        let img = DynamicImage::ImageRgb8(RgbImage::new(3000, 2000));
        let png = png_bytes(&img);
        assert_eq!(
            decode_bytes_limited(&png, 5_000_000),
            Err(DecodeError::TooLarge {
                width: 3000,
                height: 2000,
                max: 5
            })
        );
        assert!(decode_bytes_limited(&png, 6_000_000).is_ok());
    }

    #[test]
    fn resize_shrinks_by_area_average() {
        let mut img = RgbImage::new(4, 4);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if x < 2 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([200, 200, 200])
            };
        }
        let small = resize_rgb(&img, 2, 2);
        assert_eq!(small.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(small.get_pixel(1, 1).0, [200, 200, 200]);
        let one = resize_rgb(&img, 1, 1);
        assert_eq!(one.get_pixel(0, 0).0, [100, 100, 100]);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 2x1 JPEG whose EXIF says "rotate 90° clockwise" must come out 1x2.
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(16, 8, |x, _| {
            image::Rgb(if x < 8 { [255, 0, 0] } else { [0, 0, 255] })
        }));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .expect("jpeg");
        let with_exif = insert_exif_orientation(&jpeg, 6);
        let out = decode_bytes(&with_exif).expect("decode");
        assert_eq!((out.width(), out.height()), (8, 16));
        // After a clockwise turn the left (red) half is on top.
        assert!(out.get_pixel(4, 2)[0] > 200 && out.get_pixel(4, 2)[2] < 60);
    }

    /// Insert a minimal APP1 EXIF segment (big-endian TIFF, one IFD entry) after SOI.
    fn insert_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08"); // header, IFD at 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation tag
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut seg = b"Exif\x00\x00".to_vec();
        seg.extend_from_slice(&tiff);
        let len = (seg.len() + 2) as u16;
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&seg);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}
