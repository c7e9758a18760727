//! `gpu-siamese web`: the page on 127.0.0.1. A few lines of HTTP/1.1 (one request a connection, GET
//! and POST), enough for a browser on the same machine: the page's folder at /, a data folder
//! (Fashion-MNIST's IDX files, checkpoints) at /data/. The browser tests answer through the same
//! `answer`, with their own files and a hook for what the page posts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

/// A body a GET is answered with.
pub struct Reply {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// What a request asks: its method, path (without the query) and body.
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// The most a posted body may hold (the page posts results and log lines).
const MOST_BODY: usize = 64 << 20;

/// Reads one request from `stream` and answers it with what `route` gives (None: 404).
pub fn answer(mut stream: TcpStream, route: impl FnOnce(&Request) -> Option<Reply>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("/"));
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    if length > MOST_BODY {
        return respond(&mut stream, "413 Payload Too Large", "text/plain", b"too large");
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let request = Request { method, path, body };
    match route(&request) {
        Some(reply) => respond(&mut stream, "200 OK", reply.content_type, &reply.body),
        None => respond(&mut stream, "404 Not Found", "text/plain", format!("{} is not served", request.path).as_bytes()),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    // no-store: a rebuilt page or model is never served stale. The headers make the page
    // cross-origin isolated, which browsers ask of pages that time GPU work finely.
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// The content type of a file, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The file under `root` that a URL path names, if it is one: never outside `root` (no `..`, no
/// absolute parts), `index.html` for a folder.
pub fn file_under(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = root.join(relative);
    let path = if path.is_dir() { path.join("index.html") } else { path };
    path.is_file().then_some(path)
}

/// Serves `site` at / and `data` (when given) at /data/ on 127.0.0.1:`port` (0: any free port), telling
/// `ready` the address; runs until the process ends.
pub fn serve(site: &Path, data: Option<&Path>, port: u16, ready: impl FnOnce(&str)) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = format!("http://{}/", listener.local_addr().map_err(|e| e.to_string())?);
    ready(&address);
    for stream in listener.incoming().flatten() {
        let route = |request: &Request| {
            if request.method != "GET" {
                return None;
            }
            let file = match (request.path.strip_prefix("/data/"), data) {
                (Some(rest), Some(data)) => file_under(data, rest),
                _ => file_under(site, &request.path),
            }?;
            let body = std::fs::read(&file).ok()?;
            Some(Reply { content_type: content_type(&file), body })
        };
        if let Err(e) = answer(stream, route) {
            eprintln!("note: a request failed: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_under_the_root_are_served() {
        let root = std::env::temp_dir().join(format!("gpu-siamese-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("index.html"), "page").unwrap();
        std::fs::write(root.join("pkg/a.wasm"), "wasm").unwrap();
        assert_eq!(file_under(&root, "/"), Some(root.join("index.html")));
        assert_eq!(file_under(&root, "/pkg/a.wasm"), Some(root.join("pkg/a.wasm")));
        assert_eq!(file_under(&root, "/../etc/passwd"), None);
        assert_eq!(file_under(&root, "/pkg/../../etc/passwd"), None);
        assert_eq!(file_under(&root, "//etc/passwd"), None);
        assert_eq!(file_under(&root, "/missing.js"), None);
        assert_eq!(content_type(Path::new("x.wasm")), "application/wasm");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
