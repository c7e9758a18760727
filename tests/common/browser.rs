//! Headless Chromium on a page of the test's own. The test serves the page and what it fetches on
//! 127.0.0.1; the page posts its result as JSON to /result (and progress lines to /log, printed as they
//! come). Chromium's WebGPU is Dawn, with Tint as its WGSL compiler and SwiftShader as its adapter here:
//! a third WebGPU implementation beside wgpu's Vulkan and GL back ends, and a stricter compiler.

#![allow(dead_code)]

use std::collections::HashMap;
use gpu_siamese::serve::Reply;
use std::io::{BufRead, BufReader, Write};
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
    /// A file from disk, typed by its extension.
    pub fn file(path: &std::path::Path) -> Served {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Served { content_type: gpu_siamese::serve::content_type(path), body }
    }
}

/// The built page (`make web-build`), every file under its URL: what `gpu-siamese web` serves at /.
pub fn site() -> HashMap<String, Served> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web");
    assert!(
        root.join("pkg/gpu_siamese_web_bg.wasm").is_file(),
        "no built page in {}: `make web-build` builds it (`make test` does first)",
        root.display()
    );
    let mut files = HashMap::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.insert(format!("/{}", path.strip_prefix(&root).unwrap().display()), Served::file(&path));
            }
        }
    }
    files.insert("/".into(), Served::file(&root.join("index.html")));
    files
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
pub fn run_page(files: HashMap<String, Served>, timeout: Duration) -> String {
    run_page_at(files, "/", None, timeout)
}

/// As [`run_page`], opening `url` (a path with its query); with `screenshot`, once the page has posted
/// its result, Chromium's picture of the whole page (1000 pixels wide) is written there, taken over the DevTools protocol.
pub fn run_page_at(files: HashMap<String, Served>, url: &str, screenshot: Option<&std::path::Path>, timeout: Duration) -> String {
    launch(files, url, screenshot, true, timeout)
}

/// As [`run_page_at`] in a Chromium without WebGPU (as most Linux browsers still are): no adapter.
pub fn run_page_without_webgpu(files: HashMap<String, Served>, url: &str, timeout: Duration) -> String {
    launch(files, url, None, false, timeout)
}

fn launch(files: HashMap<String, Served>, url: &str, screenshot: Option<&std::path::Path>, webgpu: bool, timeout: Duration) -> String {
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
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1000,1400",
        ])
        .args(webgpu.then_some("--enable-unsafe-webgpu"))
        .arg(format!("--user-data-dir={}", scratch.join("profile").display()))
        .arg(format!("http://127.0.0.1:{port}{url}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let devtools = screenshot.map(|_| DevTools::attach(&mut command));
    let browser = Browser(command.spawn().expect("Chromium starts"));
    let got = result.recv_timeout(timeout);
    if let (Ok(_), Some(path), Some(mut devtools)) = (&got, screenshot, devtools) {
        let png = devtools.screenshot();
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    drop(browser);
    let console = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);
    // The page's console, for a failure's story (shown with the test's output).
    for line in console.lines().filter(|l| l.contains("CONSOLE")) {
        eprintln!("browser console: {line}");
    }
    match got {
        Ok(json) => json,
        Err(_) => {
            let lines: Vec<&str> = console.lines().filter(|l| l.contains("CONSOLE") || l.contains("webgpu") || l.contains("FATAL")).collect();
            panic!("the page posted no result within {timeout:?}; the browser's last console lines:\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
        }
    }
}

/// Chromium's DevTools protocol over `--remote-debugging-pipe`: JSON messages, each ended by a NUL byte,
/// written to the browser's fd 3 and read from its fd 4.
struct DevTools {
    to_browser: std::io::PipeWriter,
    from_browser: BufReader<std::io::PipeReader>,
    next_id: u64,
}

impl DevTools {
    /// Gives `command` the two pipes as its fds 3 and 4.
    fn attach(command: &mut Command) -> DevTools {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let (browser_reads, to_browser) = std::io::pipe().unwrap();
        let (from_browser, browser_writes) = std::io::pipe().unwrap();
        let (read_fd, write_fd) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        command.arg("--remote-debugging-pipe");
        // SAFETY: dup2 is async-signal-safe; between fork and exec nothing else runs.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(read_fd, 3) < 0 || libc::dup2(write_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The child holds its ends after the fork; these copies close once it has started.
        std::mem::forget((browser_reads, browser_writes));
        DevTools { to_browser, from_browser: BufReader::new(from_browser), next_id: 1 }
    }

    /// Sends `method` (to `session`'s page, if given) and returns its result, skipping events.
    fn call(&mut self, session: Option<&str>, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).expect("writing to Chromium's DevTools pipe");
        loop {
            let mut reply = Vec::new();
            self.from_browser.read_until(0, &mut reply).expect("reading Chromium's DevTools pipe");
            assert!(!reply.is_empty(), "Chromium closed its DevTools pipe");
            reply.pop();
            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("DevTools speaks JSON");
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    /// The page's picture, as PNG bytes.
    fn screenshot(&mut self) -> Vec<u8> {
        let targets = self.call(None, "Target.getTargets", serde_json::json!({}));
        let page = targets["targetInfos"].as_array().unwrap().iter().find(|t| t["type"] == "page").expect("a page").clone();
        let session = self.call(None, "Target.attachToTarget", serde_json::json!({"targetId": page["targetId"], "flatten": true}));
        let session = session["sessionId"].as_str().unwrap().to_string();
        // The whole page, not only the window's height of it.
        let metrics = self.call(Some(&session), "Page.getLayoutMetrics", serde_json::json!({}));
        let size = &metrics["cssContentSize"];
        let clip = serde_json::json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let shot = self.call(Some(&session), "Page.captureScreenshot", serde_json::json!({"format": "png", "captureBeyondViewport": true, "clip": clip}));
        base64(shot["data"].as_str().unwrap())
    }
}

/// Standard base64 decoded (DevTools' binary payloads).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {}", c as char),
    } as u32;
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Answers one request: a GET from `files`, a POST to /log printed, a POST to /result passed on.
fn serve(stream: TcpStream, files: &HashMap<String, Served>, results: &mpsc::Sender<String>) -> std::io::Result<()> {
    gpu_siamese::serve::answer(stream, |request| {
        let text = || String::from_utf8_lossy(&request.body).into_owned();
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", path) => files.get(path).map(|f| Reply { content_type: f.content_type, body: f.body.clone() }),
            ("POST", "/log") => {
                eprintln!("page: {}", text());
                Some(Reply { content_type: "text/plain", body: Vec::new() })
            }
            ("POST", "/result") => {
                let _ = results.send(text());
                Some(Reply { content_type: "text/plain", body: Vec::new() })
            }
            _ => None,
        }
    })
}
