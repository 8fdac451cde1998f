//! `graft export --format web`: the classifier as a static folder that runs in the browser
//! with no server — the page, its script, the ONNX file, what the page must know of the model
//! (`model.json`), ONNX Runtime Web's WebAssembly runtime, a web-app manifest and a service
//! worker that caches every file, so the page installs on a phone and works offline.

use std::path::{Path, PathBuf};

use graft_data::preprocess::Preprocess;
use image::{Rgba, RgbaImage};
use serde::Serialize;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");
const WORKER: &str = include_str!("web/sw.js");

/// The files of ONNX Runtime Web the page loads (its single-threaded WebAssembly build), and
/// its package.json, which carries its licence.
pub const RUNTIME_FILES: [&str; 4] = [
    "ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    "package.json",
];

/// `model.json`: what the page needs besides the ONNX file.
#[derive(Debug, Clone, Serialize)]
pub struct WebMeta {
    pub name: String,
    pub encoder: String,
    pub classes: Vec<String>,
    /// `classes.toml`'s fields per class, shown with a prediction.
    pub class_info: serde_json::Map<String, serde_json::Value>,
    pub preprocess: Preprocess,
    /// Below this top probability the answer is flagged uncertain.
    pub threshold: f32,
    /// Classes shown per answer.
    pub top: usize,
    /// The ONNX graph's input and probability output.
    pub input: String,
    pub output: String,
    /// fp32 or int8.
    pub precision: String,
    pub sha256: String,
    /// When the run's model was written (ms since the Unix epoch): the page prefers the API's
    /// model when that one differs and is newer.
    pub trained_ms: Option<i64>,
    pub graft: String,
    /// Where predictions made on the device are sent when online (`POST API/feedback`):
    /// `/` for the server that serves the page, or an absolute URL; `None`: kept on the device.
    pub api: Option<String>,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct WebApp<'a> {
    pub model: &'a [u8],
    pub meta: &'a WebMeta,
    /// The folder holding [`RUNTIME_FILES`] (scripts/fetch-onnxruntime-web.sh).
    pub runtime: &'a Path,
}

/// What was written: each file relative to the folder, with its size.
#[derive(Debug, Clone, Serialize)]
pub struct WebFiles {
    pub files: Vec<(String, u64)>,
    pub bytes: u64,
    /// The service worker's cache name: changes whenever a file does.
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ONNX Runtime Web is not in {}: {missing} is missing; fetch it with scripts/fetch-onnxruntime-web.sh", dir.display())]
    Runtime { dir: PathBuf, missing: String },
    #[error("{0}")]
    Encode(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WebError + '_ {
    move |source| WebError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write the folder `out` (created; files already there are replaced).
pub fn write_web(out: &Path, app: &WebApp<'_>) -> Result<WebFiles, WebError> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for f in RUNTIME_FILES {
        let p = app.runtime.join(f);
        if !p.is_file() {
            return Err(WebError::Runtime {
                dir: app.runtime.to_path_buf(),
                missing: f.to_string(),
            });
        }
        files.push((format!("ort/{f}"), std::fs::read(&p).map_err(io(&p))?));
    }
    files.push(("model.onnx".into(), app.model.to_vec()));
    let meta = serde_json::to_vec_pretty(app.meta).map_err(|e| WebError::Encode(e.to_string()))?;
    files.push(("model.json".into(), meta));
    let policy = csp(app.meta.api.as_deref());
    files.push((
        "index.html".into(),
        INDEX.replace("__CSP__", &policy).into_bytes(),
    ));
    files.push(("app.js".into(), SCRIPT.as_bytes().to_vec()));
    files.push(("style.css".into(), STYLE.as_bytes().to_vec()));
    files.push(("manifest.webmanifest".into(), manifest(&app.meta.name)));
    for side in [192, 512] {
        files.push((format!("icon-{side}.png"), icon(side)?));
    }
    // The worker's cache name hashes every other file: a new export replaces the old cache.
    let mut all = Vec::new();
    for (name, bytes) in &files {
        all.extend_from_slice(name.as_bytes());
        all.extend_from_slice(graft_data::hash::sha256_bytes(bytes).as_bytes());
    }
    let version = format!("graft-{}", &graft_data::hash::sha256_bytes(&all)[..16]);
    let mut cached: Vec<String> = vec!["./".into()];
    cached.extend(
        files
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != "ort/package.json"),
    );
    let list = serde_json::to_string(&cached).map_err(|e| WebError::Encode(e.to_string()))?;
    let worker = WORKER
        .replace("__VERSION__", &version)
        .replace("__FILES__", &list);
    files.push(("sw.js".into(), worker.into_bytes()));

    std::fs::create_dir_all(out.join("ort")).map_err(io(out))?;
    let mut written = Vec::with_capacity(files.len());
    for (name, bytes) in &files {
        let path = out.join(name);
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        written.push((name.clone(), bytes.len() as u64));
    }
    written.sort();
    Ok(WebFiles {
        bytes: written.iter().map(|(_, b)| b).sum(),
        files: written,
        version,
    })
}

/// The page's own rules: scripts and the WebAssembly runtime from the folder only, images from
/// the photos the user picks, requests to the folder and to the API's origin.
pub fn csp(api: Option<&str>) -> String {
    let origin = api
        .and_then(origin_of)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
         img-src 'self' blob: data:; style-src 'self'; connect-src 'self'{origin}"
    )
}

/// `scheme://host[:port]` of an absolute http(s) URL; `None` for a relative one.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

fn manifest(name: &str) -> Vec<u8> {
    let m = serde_json::json!({
        "name": format!("graft · {name}"),
        "short_name": "graft",
        "description": "Classify a photo on this device, with or without a connection.",
        "start_url": "./",
        "scope": "./",
        "display": "standalone",
        "background_color": "#f6f8f7",
        "theme_color": "#2f6f4f",
        "icons": [
            {"src": "icon-192.png", "sizes": "192x192", "type": "image/png"},
            {"src": "icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"}
        ]
    });
    serde_json::to_vec_pretty(&m).unwrap_or_default()
}

/// The app's icon: a green disc holding a lighter leaf-shaped lens, drawn here so no image
/// file is committed.
fn icon(side: u32) -> Result<Vec<u8>, WebError> {
    let s = side as f32;
    let img = RgbaImage::from_fn(side, side, |x, y| {
        let (u, v) = ((x as f32 + 0.5) / s - 0.5, (y as f32 + 0.5) / s - 0.5);
        // A leaf: the intersection of two discs offset either side of the diagonal.
        let leaf = |dx: f32, dy: f32| ((u - dx).powi(2) + (v - dy).powi(2)).sqrt() < 0.27;
        if leaf(0.09, -0.09) && leaf(-0.09, 0.09) {
            Rgba([222, 240, 229, 255])
        } else if (u * u + v * v).sqrt() < 0.48 {
            Rgba([47, 111, 79, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| WebError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_the_worker_caches_and_names_a_missing_runtime() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runtime = tmp.path().join("rt");
        std::fs::create_dir_all(&runtime).expect("mkdir");
        let meta = WebMeta {
            name: "t".into(),
            encoder: "mobilenet-v2".into(),
            classes: vec!["a".into(), "b".into()],
            class_info: Default::default(),
            preprocess: graft_model::arch::EncoderKind::MobileNetV2.preprocess(),
            threshold: 0.7,
            top: 3,
            input: "input".into(),
            output: "probabilities".into(),
            precision: "fp32".into(),
            sha256: "00".into(),
            trained_ms: Some(1),
            graft: "0".into(),
            api: Some("https://api.example.org:8443/v1".into()),
        };
        let app = WebApp {
            model: b"onnx",
            meta: &meta,
            runtime: &runtime,
        };
        let out = tmp.path().join("web");
        let err = write_web(&out, &app).expect_err("no runtime");
        assert!(
            err.to_string().contains("fetch-onnxruntime-web.sh"),
            "{err}"
        );
        for f in RUNTIME_FILES {
            std::fs::write(runtime.join(f), f).expect("write");
        }
        let w = write_web(&out, &app).expect("web");
        let worker = std::fs::read_to_string(out.join("sw.js")).expect("sw");
        assert!(worker.contains(&w.version));
        for (name, _) in &w.files {
            assert!(out.join(name).is_file(), "{name}");
            if name != "sw.js" && name != "ort/package.json" {
                assert!(worker.contains(&format!("\"{name}\"")), "{name} not cached");
            }
        }
        let html = std::fs::read_to_string(out.join("index.html")).expect("html");
        assert!(html.contains("wasm-unsafe-eval") && !html.contains("__CSP__"));
        assert!(
            html.contains("connect-src 'self' https://api.example.org:8443\""),
            "{html}"
        );
        assert_eq!(origin_of("/"), None);
        assert_eq!(origin_of("ftp://x"), None);
        // Same inputs, same version; another model, another.
        assert_eq!(write_web(&out, &app).expect("again").version, w.version);
        let other = WebApp {
            model: b"other",
            ..app
        };
        assert_ne!(write_web(&out, &other).expect("other").version, w.version);
    }
}
