//! A deliberately small HTTP/1.1 client for the one case where the CLI talks to a running
//! server on the same host (backups while the server holds the directory). Plain `http://`
//! only, which is what a local server speaks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, Context};

/// An error the server answered with: its code (as the API names it) and message, so the
/// CLI exits with the same code as when it does the work itself.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct RemoteError {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// GETs `path` from `base` (`http://host:port`) with a bearer token and copies the body into
/// `out`. Returns the number of body bytes.
pub(crate) fn download(
    base: &str,
    path: &str,
    token: &str,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// server addresses are supported, got {base}"))?
        .trim_end_matches('/');
    let stream = TcpStream::connect(hostport).with_context(|| format!("connecting to {base}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut w = stream.try_clone()?;
    write!(
        w,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status)
        .context("reading the server's answer")?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("the server's answer is not HTTP"))?;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse().ok();
            }
        }
    }
    let mut body: Box<dyn Read> = if chunked {
        Box::new(Chunked {
            inner: r,
            left: 0,
            done: false,
        })
    } else if let Some(n) = length {
        Box::new(r.take(n))
    } else {
        Box::new(r)
    };
    if code != 200 {
        let mut text = String::new();
        body.read_to_string(&mut text)?;
        let v = serde_json::from_str::<serde_json::Value>(&text).ok();
        let message = v
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        let error_code = v
            .as_ref()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(RemoteError {
            code: error_code,
            message: format!("the server answered {code}: {message}"),
        }
        .into());
    }
    Ok(std::io::copy(&mut body, out)?)
}

struct Chunked<R: BufRead> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = (buf.len() as u64).min(self.left) as usize;
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed early",
            ));
        }
        self.left -= got as u64;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(got)
    }
}
