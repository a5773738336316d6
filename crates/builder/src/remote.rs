//! ADD from an http(s) URL.

use std::io::Write;

use crate::error::{Error, Result};
use crate::fs::{Content, Spill};

/// A downloaded file.
pub(crate) struct Download {
    /// The bytes, streamed into a spill file.
    pub data: Content,
    /// The file name: the last path segment of the URL, as BuildKit names
    /// it (`__unnamed__` when there is none).
    pub name: String,
    /// `Last-Modified`, seconds since the epoch.
    pub mtime: Option<i64>,
}

pub(crate) async fn fetch(url: &str, spill: &Spill) -> Result<Download> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = |message: String| Error::Http { url: url.to_string(), message };
    let client = reqwest::Client::builder().build().map_err(|e| http(e.to_string()))?;
    let mut resp = client.get(url).send().await.map_err(|e| http(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(http(format!("invalid response status {}", resp.status().as_u16())));
    }
    let mtime = resp.headers().get("last-modified").and_then(|v| v.to_str().ok()).and_then(parse_http_date);
    let mut w = spill.writer()?;
    while let Some(chunk) = resp.chunk().await.map_err(|e| http(e.to_string()))? {
        w.write_all(&chunk).map_err(|e| http(e.to_string()))?;
    }
    let data = w.finish()?;
    let name = url_name(url);
    Ok(Download { data, name, mtime })
}

/// The file name BuildKit's Dockerfile frontend gives a URL:
/// `path.Base` of the URL's decoded path (trailing slashes dropped, so
/// `http://h/dir/` names `dir`), or `__unnamed__` when the path is empty
/// or `/`. A `Content-Disposition` header is not used: the frontend always
/// sets the name.
pub(crate) fn url_name(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = no_query.split_once("://").map(|(_, r)| r).unwrap_or(no_query);
    let path = path.split_once('/').map(|(_, p)| p).unwrap_or("");
    match percent_decode(path.trim_end_matches('/')).rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// `%XX` escapes decoded, as Go's `url.URL.Path` holds them (left as
/// written when malformed).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|m| *m == parts[2])? as i64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    let days = crate::config::days_from_civil(year, month, day);
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(url_name("http://h:1/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_name("https://h/"), "__unnamed__");
        assert_eq!(url_name("https://h"), "__unnamed__");
        assert_eq!(url_name("http://127.0.0.1:80/path/"), "path");
        assert_eq!(url_name("http://h/a/b//?q=/x"), "b");
        assert_eq!(url_name("http://h/a%20b"), "a b");
        assert_eq!(url_name("http://h/x%2"), "x%2");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(
            crate::config::rfc3339(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT").unwrap()),
            "2000-02-29T00:00:00Z"
        );
    }
}
