//! Headless Chromium on a page of the test's own. The test serves the page and what it fetches on
//! 127.0.0.1; the page posts its result as JSON to /result (and progress lines to /log, printed as they
//! come). Chromium's WebGPU is Dawn, with Tint as its WGSL compiler and SwiftShader as its adapter here:
//! a third WebGPU implementation beside wgpu's Vulkan and GL back ends, and a stricter compiler.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A file the test's server answers a GET with.
pub struct Served {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Served {
    pub fn html(text: &str) -> Served {
        Served { content_type: "text/html; charset=utf-8", body: text.as_bytes().to_vec() }
    }
    pub fn json(text: String) -> Served {
        Served { content_type: "application/json", body: text.into_bytes() }
    }
}

/// Chromium's path: GPU_SIAMESE_CHROMIUM, or Debian's. Without one the test fails saying how to get it
/// (`make test` installs Debian's `chromium`): a browser test never passes without running.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("GPU_SIAMESE_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {}: `make test` installs Debian's `chromium` (apt-get install chromium), or set GPU_SIAMESE_CHROMIUM",
        path.display()
    );
    path
}

/// Kills the browser however the test ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens `/` of `files` (path → file) in headless Chromium and returns what the page posts to /result,
/// or panics after `timeout` with the browser's last console lines.
pub fn run_page(files: HashMap<&'static str, Served>, timeout: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let (results, result) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve(stream, &files, &results);
        }
    });
    let scratch = std::env::temp_dir().join(format!("gpu-siamese-chromium-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let log_path = scratch.join("chromium.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", scratch.join("profile").display()))
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("Chromium starts");
    let browser = Browser(child);
    let got = result.recv_timeout(timeout);
    drop(browser);
    let console = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);
    match got {
        Ok(json) => json,
        Err(_) => {
            let lines: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE") || l.contains("webgpu") || l.contains("FATAL")).collect();
            panic!("the page posted no result within {timeout:?}; the browser's last console lines:\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
        }
    }
}

/// Answers one request: a GET from `files`, a POST to /log printed, a POST to /result passed on.
fn serve(mut stream: TcpStream, files: &HashMap<&'static str, Served>, results: &mpsc::Sender<String>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
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
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, reply): (&str, &str, &[u8]) = match (method, path) {
        ("GET", path) => match files.get(path) {
            Some(file) => ("200 OK", file.content_type, &file.body),
            None => ("404 Not Found", "text/plain", b"not served"),
        },
        ("POST", "/log") => {
            eprintln!("page: {}", String::from_utf8_lossy(&body));
            ("200 OK", "text/plain", b"")
        }
        ("POST", "/result") => {
            let _ = results.send(String::from_utf8_lossy(&body).into_owned());
            ("200 OK", "text/plain", b"")
        }
        _ => ("405 Method Not Allowed", "text/plain", b""),
    };
    write!(stream, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n", reply.len())?;
    stream.write_all(reply)?;
    stream.flush()
}
