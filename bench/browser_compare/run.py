#!/usr/bin/env python3
"""The tutorial's training step in one headless Chromium: gpu-siamese's page (target/web/pkg, built by
`make web-build`) and TensorFlow.js 4.22 on its WebGPU back end (node_modules/, `npm ci` here), both on
the adapter Chromium gives (SwiftShader on a machine without a GPU). Serves both on 127.0.0.1, runs
index.html, prints each one's ms per step and the ratio.

    python3 bench/browser_compare/run.py [--steps 20] [--tf-steps 3] [--json FILE]
"""
import argparse
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ROUTES = {"/pkg/": ROOT / "target/web/pkg", "/node_modules/": HERE / "node_modules"}
TYPES = {".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html", ".json": "application/json"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="gpu-siamese's timed steps (after 5 warm-up)")
    parser.add_argument("--tf-steps", type=int, default=3, help="TensorFlow.js's timed steps (after 1 warm-up)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--chromium", default=os.environ.get("GPU_SIAMESE_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    for path, hint in [(ROUTES["/pkg/"] / "gpu_siamese_web_bg.wasm", "make web-build"), (ROUTES["/node_modules/"] / "@tensorflow/tfjs", "npm ci in bench/browser_compare")]:
        if not path.exists():
            raise SystemExit(f"{path} is missing: {hint}")

    done = threading.Event()
    result = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            file = HERE / "index.html" if path == "/" else None
            for prefix, folder in ROUTES.items():
                if path.startswith(prefix):
                    candidate = (folder / path[len(prefix):]).resolve()
                    if folder.resolve() in candidate.parents and candidate.is_file():
                        file = candidate
            if file is None:
                self.send_error(404)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(file.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            if self.path == "/log":
                print(body, flush=True)
            elif self.path == "/result":
                result.update(json.loads(body))
                done.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="gpu-siamese-bench-chromium-")
    url = f"http://127.0.0.1:{server.server_address[1]}/?steps={args.steps}&tf_steps={args.tf_steps}"
    browser = subprocess.Popen(
        [args.chromium, "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not done.wait(timeout=3600):
            raise SystemExit("the page gave no result within an hour")
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if "error" in result:
        raise SystemExit(f"the page: {result['error']}")
    ours, theirs = result["gpu_siamese"]["ms_per_step"], result["tensorflow_js"]["ms_per_step"]
    print(f"adapter: {result['adapter']} (Chromium's WebGPU)")
    print(f"tutorial step, batch 64 pairs: gpu-siamese {ours:.1f} ms, TensorFlow.js {result['tensorflow_js']['version']} "
          f"({result['tensorflow_js']['backend']}) {theirs:.0f} ms: gpu-siamese {theirs / ours:.0f}x faster")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
