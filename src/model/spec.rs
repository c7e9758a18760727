//! The tower as text: a comma-separated list of layers, parsed into [`TowerSpec`].
//!
//! ```text
//! conv(FILTERS, K[xK][, same|valid][, relu|linear])   stride-1 convolution; default same, relu
//! maxpool                                             2x2 max-pooling, stride 2 (also maxpool(2))
//! dropout(RATE)                                       inverted dropout, 0 <= RATE < 1
//! gap                                                 global average pooling
//! dense(UNITS[, relu|linear])                         fully connected; default linear
//! ```
//! The tutorial's tower as its code runs is [`TUTORIAL_TOWER`]; the one it meant to build, with two
//! convolution blocks, is [`TUTORIAL_INTENDED_TOWER`].

use crate::dims::Padding;
use std::fmt;
use std::str::FromStr;

pub const TUTORIAL_TOWER: &str = "conv(128,2,same,relu),maxpool,dropout(0.4),gap,dense(48)";
pub const TUTORIAL_INTENDED_TOWER: &str =
    "conv(128,2,same,relu),maxpool,dropout(0.4),conv(128,2,same,relu),maxpool,dropout(0.4),gap,dense(48)";

#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    Conv2d { filters: usize, kernel_h: usize, kernel_w: usize, padding: Padding, relu: bool },
    MaxPool2,
    Dropout { rate: f32 },
    GlobalAvgPool,
    Dense { units: usize, relu: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TowerSpec {
    pub layers: Vec<LayerSpec>,
}

/// A spec that does not parse: where, which token, and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    /// 1-based character column of the offending token in the spec.
    pub column: usize,
    pub token: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "tower spec, column {} at '{}': {}", self.column, self.token, self.message)
    }
}

impl std::error::Error for SpecError {}

impl TowerSpec {
    pub fn tutorial() -> TowerSpec {
        TUTORIAL_TOWER.parse().expect("the tutorial's tower spec parses")
    }
}

/// Splits `text` at the commas outside parentheses, keeping each piece's byte offset.
fn split_top_level(text: &str, base: usize) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push((base + start, &text[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push((base + start, &text[start..]));
    pieces
}

fn trimmed(offset: usize, piece: &str) -> (usize, &str) {
    let leading = piece.len() - piece.trim_start().len();
    (offset + leading, piece.trim())
}

impl FromStr for TowerSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<TowerSpec, SpecError> {
        let column = |offset: usize| text[..offset].chars().count() + 1;
        let error = |offset: usize, token: &str, message: String| SpecError {
            column: column(offset),
            token: token.to_string(),
            message,
        };
        let mut layers = Vec::new();
        for (offset, piece) in split_top_level(text, 0) {
            let (offset, layer) = trimmed(offset, piece);
            if layer.is_empty() {
                return Err(error(offset, layer, "empty layer: two commas in a row, or one at an end".into()));
            }
            let (name, args) = match layer.find('(') {
                None => (layer, Vec::new()),
                Some(open) => {
                    if !layer.ends_with(')') {
                        return Err(error(offset, layer, "missing ')' after the layer's arguments".into()));
                    }
                    let inner = &layer[open + 1..layer.len() - 1];
                    let args = split_top_level(inner, offset + open + 1)
                        .into_iter()
                        .map(|(o, a)| trimmed(o, a))
                        .collect();
                    (layer[..open].trim(), args)
                }
            };
            let arg_count = |min: usize, max: usize, usage: &str| {
                if args.len() < min || args.len() > max || args.iter().any(|(_, a)| a.is_empty()) {
                    Err(error(offset, layer, format!("expected {usage}")))
                } else {
                    Ok(())
                }
            };
            let positive = |(o, a): (usize, &str), what: &str| -> Result<usize, SpecError> {
                match a.parse::<usize>() {
                    Ok(v) if v > 0 => Ok(v),
                    _ => Err(error(o, a, format!("{what} must be a whole number above 0"))),
                }
            };
            let activation = |(o, a): (usize, &str)| match a {
                "relu" => Ok(true),
                "linear" => Ok(false),
                _ => Err(error(o, a, "activation must be 'relu' or 'linear'".into())),
            };
            let spec = match name {
                "conv" => {
                    arg_count(2, 4, "conv(FILTERS, K or KxK[, same|valid][, relu|linear])")?;
                    let filters = positive(args[0], "the number of filters")?;
                    let (ko, k) = args[1];
                    let (kernel_h, kernel_w) = match k.split_once('x') {
                        Some((h, w)) => (positive((ko, h), "kernel height")?, positive((ko, w), "kernel width")?),
                        None => {
                            let s = positive((ko, k), "the kernel size")?;
                            (s, s)
                        }
                    };
                    let mut padding = Padding::Same;
                    let mut relu = true;
                    for &(o, a) in &args[2..] {
                        match a {
                            "same" => padding = Padding::Same,
                            "valid" => padding = Padding::Valid,
                            _ => relu = activation((o, a)).map_err(|mut e| {
                                e.message = "expected 'same', 'valid', 'relu' or 'linear'".into();
                                e
                            })?,
                        }
                    }
                    LayerSpec::Conv2d { filters, kernel_h, kernel_w, padding, relu }
                }
                "maxpool" => {
                    arg_count(0, 1, "maxpool or maxpool(2): only 2x2 windows with stride 2")?;
                    if let Some(&(o, a)) = args.first() {
                        if a != "2" {
                            return Err(error(o, a, "only 2x2 max-pooling is supported".into()));
                        }
                    }
                    LayerSpec::MaxPool2
                }
                "dropout" => {
                    arg_count(1, 1, "dropout(RATE)")?;
                    let (o, a) = args[0];
                    match a.parse::<f32>() {
                        Ok(rate) if (0.0..1.0).contains(&rate) => LayerSpec::Dropout { rate },
                        _ => return Err(error(o, a, "the dropout rate must be a number in [0, 1)".into())),
                    }
                }
                "gap" => {
                    arg_count(0, 0, "gap without arguments")?;
                    LayerSpec::GlobalAvgPool
                }
                "dense" => {
                    arg_count(1, 2, "dense(UNITS[, relu|linear])")?;
                    let units = positive(args[0], "the number of units")?;
                    let relu = match args.get(1) {
                        Some(&a) => activation(a)?,
                        None => false,
                    };
                    LayerSpec::Dense { units, relu }
                }
                _ => {
                    return Err(error(
                        offset,
                        name,
                        "unknown layer: expected conv, maxpool, dropout, gap or dense".into(),
                    ))
                }
            };
            layers.push(spec);
        }
        Ok(TowerSpec { layers })
    }
}

impl fmt::Display for TowerSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let act = |relu: bool| if relu { "relu" } else { "linear" };
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            match layer {
                LayerSpec::Conv2d { filters, kernel_h, kernel_w, padding, relu } => {
                    let k = if kernel_h == kernel_w { kernel_h.to_string() } else { format!("{kernel_h}x{kernel_w}") };
                    let pad = if *padding == Padding::Same { "same" } else { "valid" };
                    write!(f, "conv({filters},{k},{pad},{})", act(*relu))?
                }
                LayerSpec::MaxPool2 => write!(f, "maxpool")?,
                LayerSpec::Dropout { rate } => write!(f, "dropout({rate})")?,
                LayerSpec::GlobalAvgPool => write!(f, "gap")?,
                LayerSpec::Dense { units, relu } => {
                    if *relu {
                        write!(f, "dense({units},relu)")?
                    } else {
                        write!(f, "dense({units})")?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_towers_parse_and_print_back() {
        for text in [TUTORIAL_TOWER, TUTORIAL_INTENDED_TOWER] {
            let spec: TowerSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        let spec = TowerSpec::tutorial();
        assert_eq!(spec.layers.len(), 5);
        assert_eq!(
            spec.layers[0],
            LayerSpec::Conv2d { filters: 128, kernel_h: 2, kernel_w: 2, padding: Padding::Same, relu: true }
        );
        assert_eq!(spec.layers[2], LayerSpec::Dropout { rate: 0.4 });
        assert_eq!(spec.layers[4], LayerSpec::Dense { units: 48, relu: false });
    }

    #[test]
    fn defaults_and_spaces() {
        let spec: TowerSpec = " conv(8, 3x5) , maxpool(2), gap, dense(4, relu)".parse().unwrap();
        assert_eq!(
            spec.layers[0],
            LayerSpec::Conv2d { filters: 8, kernel_h: 3, kernel_w: 5, padding: Padding::Same, relu: true }
        );
        assert_eq!(spec.layers[3], LayerSpec::Dense { units: 4, relu: true });
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let err = "conv(128,2),maxpol,gap".parse::<TowerSpec>().unwrap_err();
        assert_eq!((err.column, err.token.as_str()), (13, "maxpol"));
        let err = "conv(128,two),gap".parse::<TowerSpec>().unwrap_err();
        assert_eq!((err.column, err.token.as_str()), (10, "two"));
        let err = "conv(8,2),dropout(1.5)".parse::<TowerSpec>().unwrap_err();
        assert_eq!((err.column, err.token.as_str()), (19, "1.5"));
        let err = "conv(8,2,sideways)".parse::<TowerSpec>().unwrap_err();
        assert_eq!((err.column, err.token.as_str()), (10, "sideways"));
        let err = "conv(8,2),,gap".parse::<TowerSpec>().unwrap_err();
        assert_eq!(err.column, 11);
        let err = "dense(0)".parse::<TowerSpec>().unwrap_err();
        assert_eq!((err.column, err.token.as_str()), (7, "0"));
        assert!("conv(8,2".parse::<TowerSpec>().is_err());
        assert!("maxpool(3)".parse::<TowerSpec>().is_err());
        assert!(err.to_string().contains("column 7"));
    }
}
