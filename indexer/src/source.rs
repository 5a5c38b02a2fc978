//! Reading Datanet uploads: `.txt`, `.md`, BEIR `.jsonl`, and directories of them.
//!
//! Everything is parsed and validated before anything is stored, so a malformed file is
//! reported (with its line, for JSONL) and nothing from the upload is half-written.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// One document as uploaded, before chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDocument {
    /// Where it came from: the file path, plus `#<_id>` for a JSONL record.
    pub source_name: String,
    /// The id a user knows it by: the BEIR `_id`, or the file name.
    pub external_id: String,
    /// The text that chunk offsets point into. For BEIR records, `title + "\n\n" + text`.
    pub text: String,
    /// blake3 of the raw uploaded bytes (the file, or the JSONL line).
    pub raw_hash: [u8; 32],
    pub byte_len: usize,
}

#[derive(Deserialize)]
struct BeirRecord {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    #[serde(default)]
    title: Option<String>,
    text: String,
}

/// Reads every path (files, or directories walked in sorted order) into documents.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceDocument>> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut documents = Vec::new();
    for file in files {
        documents.extend(read_file(&file)?);
    }
    Ok(documents)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(Error::io(path))?
            .map(|e| e.map(|e| e.path()).map_err(Error::io(path)))
            .collect::<Result<_>>()?;
        entries.sort();
        for entry in entries {
            let hidden = entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if entry.is_dir() || kind_of(&entry).is_some() {
                collect_files(&entry, out)?;
            }
        }
        Ok(())
    } else if kind_of(path).is_some() {
        out.push(path.to_path_buf());
        Ok(())
    } else {
        Err(Error::UnsupportedInput { path: path.to_path_buf() })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Jsonl,
}

fn kind_of(path: &Path) -> Option<Kind> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "txt" | "md" | "markdown" => Some(Kind::Text),
        "jsonl" => Some(Kind::Jsonl),
        _ => None,
    }
}

/// Reads one file into its documents.
pub fn read_file(path: &Path) -> Result<Vec<SourceDocument>> {
    let kind = kind_of(path).ok_or_else(|| Error::UnsupportedInput { path: path.to_path_buf() })?;
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    parse(path, kind, bytes)
}

/// Reads an upload that arrived as bytes (an HTTP request): `name` picks the format by its
/// extension, as a file name would, and names the document.
pub fn read_upload(name: &str, bytes: Vec<u8>) -> Result<Vec<SourceDocument>> {
    let path = Path::new(name);
    let kind = kind_of(path).ok_or_else(|| Error::UnsupportedInput { path: path.to_path_buf() })?;
    parse(path, kind, bytes)
}

fn parse(path: &Path, kind: Kind, bytes: Vec<u8>) -> Result<Vec<SourceDocument>> {
    let malformed = |line, reason: String| Error::MalformedInput { path: path.to_path_buf(), line, reason };
    let text = String::from_utf8(bytes)
        .map_err(|e| malformed(None, format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    let name = path.display().to_string();
    match kind {
        Kind::Text => {
            if text.trim().is_empty() {
                return Err(malformed(None, "the file is empty".into()));
            }
            let external_id = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(vec![SourceDocument {
                raw_hash: *blake3::hash(text.as_bytes()).as_bytes(),
                byte_len: text.len(),
                source_name: name,
                external_id,
                text,
            }])
        }
        Kind::Jsonl => {
            let mut documents = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (index, line) in text.lines().enumerate() {
                let line_no = index + 1;
                if line.trim().is_empty() {
                    continue;
                }
                let record: BeirRecord = serde_json::from_str(line).map_err(|e| {
                    malformed(Some(line_no), format!("not a BEIR record {{\"_id\",\"title\",\"text\"}}: {e}"))
                })?;
                let id = match record.id {
                    serde_json::Value::String(s) if !s.is_empty() => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return Err(malformed(Some(line_no), "\"_id\" must be a non-empty string or number".into())),
                };
                if !seen.insert(id.clone()) {
                    return Err(malformed(Some(line_no), format!("duplicate \"_id\" {id:?}")));
                }
                let title = record.title.unwrap_or_default();
                let body = if title.trim().is_empty() {
                    record.text
                } else if record.text.trim().is_empty() {
                    title
                } else {
                    format!("{}\n\n{}", title.trim_end(), record.text)
                };
                if body.trim().is_empty() {
                    return Err(malformed(Some(line_no), "record has no title and no text".into()));
                }
                documents.push(SourceDocument {
                    source_name: format!("{name}#{id}"),
                    external_id: id,
                    raw_hash: *blake3::hash(line.as_bytes()).as_bytes(),
                    byte_len: line.len(),
                    text: body,
                });
            }
            if documents.is_empty() {
                return Err(malformed(None, "no records".into()));
            }
            Ok(documents)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn reads_text_markdown_and_beir() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", "Plain text.");
        write(dir.path(), "b.md", "# Title\n\nBody.");
        write(
            dir.path(),
            "c.jsonl",
            "{\"_id\":\"d1\",\"title\":\"T\",\"text\":\"Body one.\"}\n\n{\"_id\":7,\"text\":\"Body two.\"}\n",
        );
        write(dir.path(), "ignored.bin", "x");
        let docs = read_sources(&[dir.path().to_path_buf()]).unwrap();
        let ids: Vec<_> = docs.iter().map(|d| d.external_id.as_str()).collect();
        assert_eq!(ids, ["a.txt", "b.md", "d1", "7"]);
        assert_eq!(docs[2].text, "T\n\nBody one.");
        assert_eq!(docs[3].text, "Body two.");
        assert!(docs[2].source_name.ends_with("c.jsonl#d1"));
    }

    #[test]
    fn malformed_jsonl_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.jsonl", "{\"_id\":\"1\",\"text\":\"ok\"}\n{\"_id\":\"2\",\"text\":\n");
        let err = read_sources(&[path]).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2"), "{err}");
        let path = write(dir.path(), "dup.jsonl", "{\"_id\":\"1\",\"text\":\"a\"}\n{\"_id\":\"1\",\"text\":\"b\"}\n");
        let err = read_sources(&[path]).unwrap_err().to_string();
        assert!(err.contains("dup.jsonl:2") && err.contains("duplicate"), "{err}");
    }

    #[test]
    fn unsupported_and_invalid_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pdf = write(dir.path(), "x.pdf", "%PDF");
        assert!(matches!(read_sources(&[pdf]), Err(Error::UnsupportedInput { .. })));
        let path = dir.path().join("latin1.txt");
        std::fs::write(&path, b"caf\xe9").unwrap();
        let err = read_sources(&[path]).unwrap_err().to_string();
        assert!(err.contains("latin1.txt") && err.contains("UTF-8"), "{err}");
        let empty = write(dir.path(), "empty.md", "  \n");
        assert!(read_sources(&[empty]).is_err());
        assert!(read_sources(&[dir.path().join("missing.txt")]).is_err());
    }
}
