//! Reading the files a manifest names (compose files, pre-launch scripts, `${file:...}`,
//! `allowed_dirs:`), each once however often it is named, through [`FilePolicy`]; an error is
//! reported once, at the first reference, with the others listed under it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::FileRef;
use super::super::files::{FileError, FilePolicy, Limit, human_bytes};
use super::super::yaml::{Kind, Node, Span};
use super::Loader;

/// A read file, cached by path and limit, and the places that referenced it after an error.
pub(super) struct FileEntry {
    pub result: Result<Arc<String>, FileError>,
    /// The diagnostic reporting the error, and the further references to the same file.
    pub diag: Option<usize>,
    pub more: Vec<(String, Span)>,
}

impl Loader<'_> {
    /// `allowed_dirs:`: directories outside the manifest's own that files may be read from.
    pub(super) fn allowed_dirs(&mut self, node: &Node) {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => {
                self.err(node.span, "allowed_dirs must be a list of directories").set_label("expected a list");
                return;
            }
        };
        for it in items {
            let Some(d) = self.path_string(it, "an allowed directory") else { continue };
            let full = self.dir.join(&d);
            if !full.is_dir() {
                let dir = display_dir(&self.dir);
                self.err(it.span, format!("allowed directory `{d}` is not a directory"))
                    .set_label("not a directory")
                    .add_hint(format!("paths are relative to the manifest's directory ({dir})"));
                continue;
            }
            self.allowed_dirs.push(PathBuf::from(d));
        }
        self.policy = FilePolicy::new(&self.dir, &self.allowed_dirs);
    }

    /// A compose file or pre-launch script, read once however many CVMs name it.
    pub(super) fn file(&mut self, node: &Node, kind: &str, who: &str) -> Option<FileRef> {
        let path = self.path_string(node, kind)?;
        let content = self.read_file(&path, Limit::Compose, node.span, kind, who)?;
        Some(FileRef { path, content: content.to_string() })
    }

    /// Reads a file the manifest names, once however often it is named. An error is reported
    /// once, at the first reference; later references are listed with it.
    pub(super) fn read_file(
        &mut self,
        path: &str,
        limit: Limit,
        span: Span,
        kind: &str,
        who: &str,
    ) -> Option<Arc<String>> {
        let key = (path.to_string(), limit);
        if !self.files.contains_key(&key) {
            let result = self.policy.read(path, limit).map(Arc::new);
            let diag = match &result {
                Err(e) => {
                    self.file_error(path, e, span, kind);
                    Some(self.diags.len() - 1)
                }
                Ok(_) => None,
            };
            self.files.insert(key.clone(), FileEntry { result, diag, more: Vec::new() });
            return self.files[&key].result.as_ref().ok().cloned();
        }
        let entry = self.files.get_mut(&key).expect("present");
        if entry.result.is_err() {
            entry.more.push((who.to_string(), span));
        }
        entry.result.as_ref().ok().cloned()
    }

    /// Reports a file that cannot be read (never with its content).
    pub(super) fn file_error(&mut self, path: &str, e: &FileError, span: Span, kind: &str) {
        let dir = display_dir(&self.dir);
        let label = match e {
            FileError::NotFound => "file not found",
            FileError::Outside | FileError::System => "not allowed",
            FileError::TooLarge(_) => "too large",
            _ => "cannot read",
        };
        let hint = match e {
            FileError::NotFound => Some(format!("paths are relative to the manifest's directory ({dir})")),
            FileError::Outside => Some(format!(
                "teeform reads files only from the manifest's directory ({dir}) and the directories listed under `allowed_dirs:` at the top of the manifest"
            )),
            FileError::TooLarge(Limit::Compose) => Some(format!(
                "the API accepts at most {} for a compose file and pre-launch script together",
                human_bytes(Limit::Compose.bytes())
            )),
            FileError::NotRegular(_) => Some("name a regular file".to_string()),
            FileError::NotUtf8 => Some("save the file as UTF-8".to_string()),
            _ => None,
        };
        let d = self.err(span, format!("cannot read {kind} `{path}`: {e}")).set_label(label);
        d.hints.extend(hint);
    }

    /// Lists, under each file error, the other places that name the same file.
    pub(super) fn finish_files(&mut self) {
        let mut notes: Vec<(usize, Vec<(String, Span)>)> = self
            .files
            .values()
            .filter_map(|e| Some((e.diag?, e.more.clone())))
            .filter(|(_, m)| !m.is_empty())
            .collect();
        notes.sort_by_key(|(i, _)| *i);
        for (i, more) in notes {
            let src = self.src.clone();
            let d = &mut self.diags[i];
            for (who, span) in more.iter().take(3) {
                d.also.push(super::super::diag::Related {
                    source: src.clone(),
                    span: *span,
                    label: format!("also named by {who}"),
                });
            }
            let n = more.len();
            d.add_hint(format!(
                "{n} more place{} name{} this file{}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" },
                if n > 3 { format!(" ({} not shown)", n - 3) } else { String::new() }
            ));
        }
    }
}

pub(super) fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() { ".".into() } else { dir.display().to_string() }
}
