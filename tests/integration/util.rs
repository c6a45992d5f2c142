//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Run the real `mpdr` binary.
pub fn mpdr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpdr")).args(args).env("MPDR_LOG", "warn").output().expect("the mpdr binary runs")
}

/// `mpdr train --data <data> --model <model> --out <out> --config <config>` plus `extra`
/// flags; panics with train's stderr when it fails.
pub fn train_ok(data: &Path, model: &str, out: &Path, config: &Path, extra: &[&str]) {
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let (data, out, config) = (s(data), s(out), s(config));
    let mut args = vec!["train", "--data", &data, "--model", model, "--out", &out, "--config", &config];
    args.extend_from_slice(extra);
    let o = mpdr(&args);
    assert!(o.status.success(), "train failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// A WAV file from raw parts: `declared_data_len` may lie about the data that follows.
pub fn wav_bytes(format_tag: u16, channels: u16, rate: u32, bits: u16, declared_data_len: u32, data: &[u8]) -> Vec<u8> {
    let block_align = channels as u32 * bits as u32 / 8;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&format_tag.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * block_align).to_le_bytes());
    b.extend_from_slice(&(block_align as u16).to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&declared_data_len.to_le_bytes());
    b.extend_from_slice(data);
    b
}

pub fn pcm16(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub fn f32le(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

pub fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n).map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as f32).collect()
}

/// A real HTTP receiver on `listener` that records every JSON body it gets, in arrival order,
/// and answers 200.
pub fn json_receiver(listener: std::net::TcpListener) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let server = tiny_http::Server::from_listener(listener, None).unwrap();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            if let Ok(v) = serde_json::from_str(&body) {
                g.lock().unwrap().push(v);
            }
            let _ = req.respond(tiny_http::Response::empty(200));
        }
    });
    got
}

/// `METHOD path` with `body` and an optional bearer token to the HTTP server at `addr`:
/// (status, body).
pub fn http_call(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = s.write_all(body);
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}
