//! `gpu-siamese embed`: the embeddings of pictures (a folder, an IDX file or an IDX folder's split) as a
//! NumPy `.npy` file, with a CSV index of their sources and labels beside it.

use crate::checkpoint::write_set;
use crate::data::{csv_field, decode_all, list_images, load_split, read_idx};
use crate::evaluate::Trained;
use crate::gpu::{Gpu, Kernels};
use crate::model::InputShape;
use crate::npy;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Pictures to embed: their bytes (the model's input), and for each its source and label.
pub struct Sources {
    pub pixels: Vec<u8>,
    pub names: Vec<String>,
    pub labels: Vec<String>,
}

pub struct EmbedOptions<'p> {
    /// A folder of pictures, an IDX images file, or a folder of IDX files.
    pub images: &'p Path,
    /// The split of an IDX folder: "t10k" or "train".
    pub split: &'p str,
    /// The .npy file; its index goes beside it as .csv.
    pub out: &'p Path,
    pub polarity: crate::data::Polarity,
    /// Images per forward pass.
    pub batch_size: Option<usize>,
}

/// The pictures `images` names (a folder, an IDX images file or an IDX folder's `split`) as the model
/// takes them (`input`), each with its source and label.
pub fn load_sources(images: &Path, split: &str, input: InputShape) -> Result<Sources> {
    let idx_shape_check = |path: &Path, rows: usize, cols: usize| -> Result<()> {
        if [rows, cols, 1] != [input.h, input.w, input.c] {
            return Err(format!(
                "{}: holds {rows}x{cols} grayscale images but the model takes {}x{}x{}; pictures in a folder are resized, IDX images are not",
                path.display(), input.h, input.w, input.c
            )
            .into());
        }
        Ok(())
    };
    let mut sources = Sources { pixels: Vec::new(), names: Vec::new(), labels: Vec::new() };
    let name = images.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if images.is_file() && name.contains("-images-idx3-ubyte") {
        let array = read_idx(images)?;
        if array.dims.len() != 3 {
            return Err(format!("{}: expected images [count, rows, cols], found {} dimensions", images.display(), array.dims.len()).into());
        }
        idx_shape_check(images, array.dims[1], array.dims[2])?;
        let labels_path = images.with_file_name(name.replace("-images-idx3-ubyte", "-labels-idx1-ubyte"));
        let labels = read_idx(&labels_path).ok().filter(|l| l.dims == [array.dims[0]]).map(|l| l.data);
        for i in 0..array.dims[0] {
            sources.names.push(format!("{}#{i}", images.display()));
            sources.labels.push(labels.as_ref().map_or(String::new(), |l| l[i].to_string()));
        }
        sources.pixels = array.data;
    } else if images.is_dir() && std::fs::read_dir(images)?.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{split}-images-idx3-ubyte"))) {
        let set = load_split(images, split)?;
        idx_shape_check(images, set.rows, set.cols)?;
        for i in 0..set.count {
            sources.names.push(format!("{}/{split}#{i}", images.display()));
            sources.labels.push(set.labels[i].to_string());
        }
        sources.pixels = set.pixels;
    } else if images.is_dir() {
        let listing = list_images(images)?;
        if let Some(note) = crate::data::repeat_note(&listing.repeated) {
            eprintln!("note: {note}");
        }
        let files = listing.files;
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        let mut skipped = Vec::new();
        for (file, decoded) in files.iter().zip(decode_all(&paths, input)) {
            match decoded {
                Ok(bytes) => {
                    sources.pixels.extend(bytes);
                    sources.names.push(file.path.display().to_string());
                    sources.labels.push(file.class.clone().unwrap_or_default());
                }
                Err(e) => skipped.push(e.to_string()),
            }
        }
        if !skipped.is_empty() {
            eprintln!("skipped {} of {} pictures that could not be read; the first: {}", skipped.len(), files.len(), skipped[0]);
        }
    } else {
        return Err(format!("{}: neither a folder nor an IDX images file (*-images-idx3-ubyte[.gz])", images.display()).into());
    }
    if sources.names.is_empty() {
        return Err(format!("{}: no pictures found (looked for {} files)", images.display(), crate::data::IMAGE_EXTENSIONS.join(", ")).into());
    }
    Ok(sources)
}

/// Embeds the pictures `opts` names with `trained` into a .npy file and its .csv index.
pub fn embed(gpu: &Gpu, kernels: &Kernels, trained: &Trained, opts: &EmbedOptions) -> Result<()> {
    let EmbedOptions { images, split, out, polarity, batch_size } = *opts;
    let mut sources = load_sources(images, split, trained.input())?;
    trained.match_polarity(&mut sources.pixels, polarity);
    let tower = trained.tower(gpu, kernels, batch_size)?;
    let embeddings = tower.embed(&sources.pixels)?;
    let dim = tower.dim();
    let count = sources.names.len();
    let index_path = out.with_extension("csv");
    let mut index = String::from("row,source,label\n");
    for (i, (name, label)) in sources.names.iter().zip(&sources.labels).enumerate() {
        index.push_str(&format!("{i},{},{}\n", csv_field(name), csv_field(label)));
    }
    // Both files or neither: a .npy beside an old index would name new embeddings with old sources.
    write_set(&[(index_path.clone(), index.into_bytes()), (out.to_path_buf(), npy::npy_f32(&embeddings, &[count, dim]))])
        .map_err(|(path, e)| format!("cannot write {}: {e} (both files are written before either replaces what was there)", path.display()))?;
    println!("{count} embeddings of {dim} values: {} (index: {})", out.display(), index_path.display());
    Ok(())
}
