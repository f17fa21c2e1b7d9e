//! The console (`agent-ui/`): embedded in release builds, read from disk in
//! debug builds (rust-embed's default), or from `http.ui_dir` when set.

use std::path::PathBuf;

use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "agent-ui/"]
struct Assets;

pub fn configure(cfg: &mut web::ServiceConfig, dir: Option<PathBuf>) {
    cfg.app_data(web::Data::new(UiDir(dir)))
        .default_service(web::to(serve));
}

struct UiDir(Option<PathBuf>);

async fn serve(req: HttpRequest, dir: web::Data<UiDir>) -> HttpResponse {
    if req.method() != actix_web::http::Method::GET && req.method() != actix_web::http::Method::HEAD
    {
        return HttpResponse::MethodNotAllowed().finish();
    }
    let path = req.path().trim_start_matches('/');
    let path = match path {
        "" => "index.html",
        "docs" | "docs/" => "docs.html",
        p => p,
    };
    if path
        .split('/')
        .any(|seg| seg == ".." || seg.starts_with('.'))
    {
        return HttpResponse::NotFound().finish();
    }
    let body: Option<Vec<u8>> = match &dir.0 {
        Some(d) => std::fs::read(d.join(path)).ok(),
        None => Assets::get(path).map(|f| f.data.into_owned()),
    };
    match body {
        Some(bytes) => {
            // Revalidate every time (file names are not versioned, so an
            // upgrade must never mix old and new modules); the ETag makes an
            // unchanged file a cheap 304.
            let etag = format!("\"{}\"", &crate::crypto::sha256_hex(&bytes)[..32]);
            let matches = req
                .headers()
                .get(actix_web::http::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            if matches {
                return HttpResponse::NotModified()
                    .insert_header(("ETag", etag))
                    .insert_header(("Cache-Control", "no-cache"))
                    .finish();
            }
            HttpResponse::Ok()
                .content_type(mime_for(path))
                .insert_header(("Cache-Control", "no-cache"))
                .insert_header(("ETag", etag))
                .body(bytes)
        }
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found"),
    }
}

fn mime_for(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
