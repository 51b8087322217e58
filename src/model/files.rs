//! Where a model's files come from: a directory, or bytes already in memory (the page's
//! fetches in the browser, an app's embedded assets). The loaders read through this, so one
//! loader serves both.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// A model's files, by their names inside its directory (`config.json`,
/// `1_Pooling/config.json`, `model.safetensors`, `tokenizer.json`, ...).
#[derive(Clone, Copy, Debug)]
pub enum ModelFiles<'a> {
    /// A directory on disk.
    Dir(&'a Path),
    /// Files in memory, under a model name used in messages and reports.
    Bytes {
        /// The model's name (what a directory's name would be).
        name: &'a str,
        /// Contents by file name.
        files: &'a BTreeMap<String, Vec<u8>>,
    },
}

impl<'a> ModelFiles<'a> {
    /// The contents of `file`, or `None` when the model has no such file.
    pub fn read(&self, file: &str) -> Result<Option<Cow<'a, [u8]>>> {
        match *self {
            ModelFiles::Dir(dir) => {
                let path = dir.join(file);
                if !path.exists() {
                    return Ok(None);
                }
                let bytes =
                    std::fs::read(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
                Ok(Some(Cow::Owned(bytes)))
            }
            ModelFiles::Bytes { files, .. } => Ok(files.get(file).map(|b| Cow::Borrowed(b.as_slice()))),
        }
    }

    /// `file` parsed as JSON, or `None` when absent.
    pub fn json(&self, file: &str) -> Result<Option<serde_json::Value>> {
        let Some(bytes) = self.read(file)? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::File { path: self.path(file), reason: format!("not JSON: {e}") })
    }

    /// How messages name `file`: its path, or `model/file`.
    pub fn path(&self, file: &str) -> String {
        match *self {
            ModelFiles::Dir(dir) => dir.join(file).display().to_string(),
            ModelFiles::Bytes { name, .. } => format!("{name}/{file}"),
        }
    }

    /// The model's name: its directory's, or the one given.
    pub fn name(&self) -> String {
        match *self {
            ModelFiles::Dir(dir) => {
                dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
            }
            ModelFiles::Bytes { name, .. } => name.to_string(),
        }
    }

    /// `file` as a safetensors file, or an error naming it when absent.
    pub fn tensors(&self, file: &str) -> Result<super::io::TensorFile> {
        match *self {
            ModelFiles::Dir(dir) => super::io::TensorFile::open(&dir.join(file)),
            ModelFiles::Bytes { files, .. } => match files.get(file) {
                Some(b) => super::io::TensorFile::from_bytes(&self.path(file), b.clone()),
                None => Err(Error::File { path: self.path(file), reason: "missing".into() }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_a_directory_read_alike_and_name_missing_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/h64_mean_norm");
        let on_disk = ModelFiles::Dir(&dir);
        let mut map = BTreeMap::new();
        for f in ["config.json", "modules.json"] {
            map.insert(f.to_string(), std::fs::read(dir.join(f)).unwrap());
        }
        let in_memory = ModelFiles::Bytes { name: "h64", files: &map };
        assert_eq!(on_disk.json("config.json").unwrap(), in_memory.json("config.json").unwrap());
        assert!(in_memory.read("tokenizer.json").unwrap().is_none());
        assert!(on_disk.read("no-such-file.json").unwrap().is_none());
        let e = in_memory.tensors("model.safetensors").err().expect("no weights were given").to_string();
        assert!(e.contains("h64/model.safetensors") && e.contains("missing"), "{e}");
        map.insert("bad.json".into(), b"{nope".to_vec());
        let e = ModelFiles::Bytes { name: "h64", files: &map }.json("bad.json").unwrap_err().to_string();
        assert!(e.contains("h64/bad.json") && e.contains("not JSON"), "{e}");
    }
}
