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
    let reason = |e: reqwest::Error| http(polyarch_registry::short_reason(&e));
    let client = reqwest::Client::builder().build().map_err(reason)?;
    let mut resp = client.get(url).send().await.map_err(reason)?;
    if !resp.status().is_success() {
        return Err(http(format!("invalid response status {}", resp.status().as_u16())));
    }
    let mtime = resp.headers().get("last-modified").and_then(|v| v.to_str().ok()).and_then(parse_http_date);
    let mut w = spill.writer()?;
    while let Some(chunk) = resp.chunk().await.map_err(reason)? {
        w.write_all(&chunk).map_err(|e| http(e.to_string()))?;
    }
    let data = w.finish()?;
    let name = polyarch_dockerfile::values::url_file_name(url);
    Ok(Download { data, name, mtime })
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
    use polyarch_dockerfile::values::url_file_name as url_name;

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
