//! The one guard every command's outputs pass before any work is done: nothing the command reads is
//! written over, nothing lands inside a folder it reads whole (it would be read back as data next
//! time), two outputs are never one file, no device or other special file is replaced by a regular
//! one, and a gpu-siamese checkpoint is never replaced by something that is not a checkpoint.
//!
//! Files are compared by where they are, not by how they are named: canonical paths (an output not
//! written yet by its folder's canonical path and its name), and hard links as the same file.

use std::path::{Path, PathBuf};

/// Something a command reads: a file, or a folder it reads whole (pictures, IDX files).
#[derive(Clone, Debug)]
pub struct Input {
    /// What it is to the user, e.g. "the checkpoint (--checkpoint)" or "the index of the queries q.npy".
    pub what: String,
    pub path: PathBuf,
}

impl Input {
    pub fn new(what: impl Into<String>, path: &Path) -> Input {
        Input { what: what.into(), path: path.to_path_buf() }
    }

    /// An `embed` output read back (`.npy`): the file and its index beside it (`.csv`).
    pub fn embeddings(what: &str, npy: &Path) -> Vec<Input> {
        let index = npy.with_extension("csv");
        vec![Input::new(format!("{what} {}", npy.display()), npy), Input::new(format!("the index of {what} {}", npy.display()), &index)]
    }
}

/// Something a command writes: a file (a folder's files are given one by one).
#[derive(Clone, Debug)]
pub struct Output {
    /// How the user named it, e.g. "--csv q.csv" or "--out D (its groups.png)".
    pub named: String,
    pub path: PathBuf,
}

impl Output {
    /// The file `path` that option `flag` names.
    pub fn new(flag: &str, path: &Path) -> Output {
        Output { named: format!("{flag} {}", path.display()), path: path.to_path_buf() }
    }

    /// The file `name` a command writes into the folder that option `flag` names.
    pub fn in_folder(flag: &str, folder: &Path, name: &str) -> Output {
        Output { named: format!("{flag} {} (its {name})", folder.display()), path: folder.join(name) }
    }
}

/// Where `path` is, whether it exists or not: its canonical path, or for a path not there yet the
/// canonical path of its nearest folder that is, joined with the names below it.
fn place(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut below = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return Some(below.iter().rev().fold(canonical, |p, name| p.join(name)));
        }
        below.push(existing.file_name()?);
        existing = existing.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    }
}

/// Whether `a` and `b` are one file: the same place, or two names (hard links) of one inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Some(pa), Some(pb)) = (place(a), place(b)) {
        if pa == pb {
            return true;
        }
    } else if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

/// Refuses, before any work, outputs that would write over what the command reads or holds dear; the
/// message names both roles. `keep_checkpoints` is false only for `train`, whose run folder's own
/// checkpoints are its to replace.
pub fn check(inputs: &[Input], outputs: &[Output], keep_checkpoints: bool) -> Result<(), String> {
    for (i, out) in outputs.iter().enumerate() {
        let shown = &out.named;
        for input in inputs {
            if same_file(&out.path, &input.path) {
                let kind = if input.path.is_dir() { "folder" } else { "file" };
                return Err(format!("{shown} is {}: writing it would replace what the command reads; choose another {kind}", input.what));
            }
            if input.path.is_dir() {
                if let (Some(o), Some(folder)) = (place(&out.path), place(&input.path)) {
                    if o.starts_with(&folder) {
                        return Err(format!(
                            "{shown} is inside {}, which is read whole: what is written there would be read back as its data; choose a place outside it",
                            input.what
                        ));
                    }
                }
            }
        }
        if let Some(earlier) = outputs[..i].iter().find(|o| same_file(&o.path, &out.path)) {
            return Err(format!("{shown} is also {}: one file cannot hold both; choose two files", earlier.named));
        }
        if let Some(kind) = crate::inputs::not_regular(&out.path).filter(|k| *k != "a folder") {
            return Err(format!("{shown} is {kind}, not a regular file: it would be replaced by one; choose a file"));
        }
        if keep_checkpoints && out.path.is_file() && crate::checkpoint::is_checkpoint(&out.path) {
            return Err(format!("{shown} holds a gpu-siamese checkpoint, which this would replace; choose another file"));
        }
    }
    Ok(())
}
