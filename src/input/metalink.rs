//! Metalink files (RFC 5854, Metalink 4, and the older Metalink 3): every
//! `<file>` becomes one download with its name (sanitised, never outside the
//! output directory), size, mirrors in priority order and hashes.

use std::path::PathBuf;

use reqwest::Url;

use super::{parse_url, DownloadSpec, LineError};
use crate::checksum::{Algo, Checksum};
use crate::naming;

/// Parse a Metalink document; every problem is reported with its line.
pub fn parse(source: &str, text: &str) -> Result<Vec<DownloadSpec>, Vec<LineError>> {
    let err = |line: usize, reason: String| LineError {
        source: source.to_string(),
        line,
        reason,
    };
    let doc = roxmltree::Document::parse(text).map_err(|e| {
        vec![err(
            e.pos().row as usize,
            format!("not a valid Metalink file: {e}"),
        )]
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "metalink" {
        return Err(vec![err(1, "the root element is not <metalink>".into())]);
    }
    let line_of = |node: roxmltree::Node| doc.text_pos_at(node.range().start).row as usize;
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for file in root
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "file")
    {
        match one_file(file) {
            Ok(spec) => specs.push(spec),
            Err(reason) => errors.push(err(line_of(file), reason)),
        }
    }
    if specs.is_empty() && errors.is_empty() {
        errors.push(err(1, "the Metalink file lists no <file>".into()));
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
}

/// One `<file>`: its name, size, URLs by priority and its strongest hash.
fn one_file(file: roxmltree::Node) -> Result<DownloadSpec, String> {
    let name = file
        .attribute("name")
        .ok_or("a <file> without a name attribute")?;
    // A relative path is kept as directories, but never `..` or an absolute path.
    let parts: Vec<&str> = name.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(format!("unsafe file name '{name}'"));
    }
    let mut clean = Vec::new();
    for p in &parts {
        clean.push(naming::sanitize(p).ok_or_else(|| format!("unusable file name '{name}'"))?);
    }
    let out = clean.pop().expect("at least one part");
    // Metalink 4: <url priority="1"> (lower first); Metalink 3: <url
    // preference="100"> (higher first). Only http and https are fetched.
    let mut urls: Vec<(i64, usize, Url)> = Vec::new();
    for (i, u) in file
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "url")
        .enumerate()
    {
        let Some(text) = u.text().map(str::trim) else {
            continue;
        };
        let Ok(url) = parse_url(text) else { continue };
        let rank = match (u.attribute("priority"), u.attribute("preference")) {
            (Some(p), _) => p.parse().unwrap_or(999_999),
            (None, Some(p)) => -p.parse::<i64>().unwrap_or(0),
            (None, None) => 999_999,
        };
        urls.push((rank, i, url));
    }
    urls.sort_by_key(|(rank, i, _)| (*rank, *i));
    let mut urls: Vec<Url> = urls.into_iter().map(|(_, _, u)| u).collect();
    if urls.is_empty() {
        return Err(format!("'{name}' has no http or https URL"));
    }
    let mut spec = DownloadSpec::new(urls.remove(0));
    if !urls.is_empty() {
        spec.extra_mut().mirrors = urls;
    }
    spec.out = Some(out);
    if !clean.is_empty() {
        spec.dir = Some(clean.iter().collect::<PathBuf>());
    }
    if let Some(size) = child_text(file, "size") {
        spec.extra_mut().size = Some(
            size.parse()
                .map_err(|_| format!("'{name}': size '{size}' is not a number"))?,
        );
    }
    // The strongest whole-file hash (not the <pieces> ones).
    spec.extra_mut().checksum = file
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "hash")
        .filter(|n| {
            n.parent_element()
                .is_none_or(|p| p.tag_name().name() != "pieces")
        })
        .filter_map(|h| {
            let algo: Algo = h.attribute("type")?.parse().ok()?;
            Checksum::from_hex(algo, h.text()?.trim()).ok()
        })
        .max_by_key(|c| c.algo.strength());
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <file name="sub/example.bin">
    <size>3</size>
    <hash type="md5">900150983cd24fb0d6963f7d28e17f72</hash>
    <hash type="sha-256">ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad</hash>
    <pieces length="1" type="sha-1"><hash>00</hash></pieces>
    <url priority="2">http://b.example/example.bin</url>
    <url priority="1">http://a.example/example.bin</url>
    <url priority="3">ftp://c.example/example.bin</url>
  </file>
</metalink>"#;

    const V3: &str = r#"<?xml version="1.0"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/">
  <files>
    <file name="old.iso">
      <size>42</size>
      <verification><hash type="sha1">a9993e364706816aba3e25717850c26c9cd0d89d</hash></verification>
      <resources>
        <url type="http" preference="10">http://slow.example/old.iso</url>
        <url type="http" preference="100">http://fast.example/old.iso</url>
      </resources>
    </file>
  </files>
</metalink>"#;

    #[test]
    fn metalink4_priorities_hashes_and_paths() {
        let specs = parse("x.meta4", V4).unwrap();
        assert_eq!(specs.len(), 1);
        let s = &specs[0];
        assert_eq!(s.url.as_str(), "http://a.example/example.bin");
        assert_eq!(s.mirrors().len(), 1, "ftp is skipped");
        assert_eq!(s.mirrors()[0].as_str(), "http://b.example/example.bin");
        assert_eq!(s.out.as_deref(), Some("example.bin"));
        assert_eq!(s.dir.as_deref(), Some(std::path::Path::new("sub")));
        assert_eq!(s.size(), Some(3));
        assert_eq!(s.checksum().unwrap().algo, Algo::Sha256);
    }

    #[test]
    fn metalink3_preferences() {
        let specs = parse("x.metalink", V3).unwrap();
        assert_eq!(specs[0].url.as_str(), "http://fast.example/old.iso");
        assert_eq!(specs[0].checksum().unwrap().algo, Algo::Sha1);
    }

    #[test]
    fn unsafe_names_and_bad_xml_are_reported_with_lines() {
        let bad = V4.replace("sub/example.bin", "../../etc/passwd");
        let errors = parse("x.meta4", &bad).unwrap_err();
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].reason.contains("unsafe"), "{errors:?}");
        let errors = parse("x.meta4", "<metalink><file name='a'>").unwrap_err();
        assert!(errors[0].reason.contains("not a valid Metalink"));
        let errors = parse("x.meta4", "<metalink/>").unwrap_err();
        assert!(errors[0].reason.contains("no <file>"));
    }
}
