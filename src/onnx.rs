//! `gpu-siamese export --onnx`: the tower as a standard ONNX model (opset 13): one batch of images in,
//! NHWC float32 in [0, 1] (bytes / 255, as `embed` reads pictures), its embeddings out; and, with
//! `--pair`, the twin's distance as a second model of two inputs. Every layer kind maps to ONNX
//! operators: convolutions with Keras' asymmetric 'same' padding as explicit pads, batch norm at
//! inference (the moving averages), dropout left out, `flatten` in Keras' NHWC order, `l2norm` as Keras
//! computes it. The protobuf encoding is prost's (derived from the messages below, the subset of
//! onnx.proto this needs, field numbers as there).

use crate::layers::{LayerOp, Shape};
use crate::model::Plan;
use prost::Message;

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 13;
/// ONNX's IR version for opset 13.
const IR_VERSION: i64 = 7;
const FLOAT: i32 = 1;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// AttributeType: FLOAT 1, INT 2, INTS 7.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i, r#type: 2, ..Default::default() }
}

fn ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: ints.to_vec(), r#type: 7, ..Default::default() }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f, r#type: 1, ..Default::default() }
}

fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    assert_eq!(values.len(), dims.iter().product::<usize>(), "{name}: values for its dims");
    TensorProto { dims: dims.iter().map(|&d| d as i64).collect(), data_type: FLOAT, name: name.into(), raw_data: bytemuck::cast_slice(values).to_vec() }
}

fn value(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => Dimension { dim_value: Some(*v as i64), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("batch".into()) },
        })
        .collect();
    let tensor_type = TensorTypeProto { elem_type: FLOAT, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto { name: name.into(), r#type: Some(TypeProto { tensor_type: Some(tensor_type) }) }
}

/// Nodes and weights being laid out, each name under a prefix (so that two towers fit one graph).
struct Builder<'a> {
    prefix: &'a str,
    nodes: Vec<NodeProto>,
    weights: Vec<TensorProto>,
    count: usize,
}

impl Builder<'_> {
    /// Adds a node of `op` on `inputs`; its output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.count += 1;
        let output = format!("{}{}_{}", self.prefix, op.to_lowercase(), self.count);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op.into(),
            attribute: attributes,
        });
        output
    }

    /// A weight shared by every tower of the graph (named without the prefix, added once).
    fn weight(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        if !self.weights.iter().any(|w| w.name == name) {
            self.weights.push(float_tensor(name, dims, values));
        }
        name.to_string()
    }
}

/// The tower's nodes from `input` (NHWC images) to its embedding; its output's name.
fn tower(b: &mut Builder, plan: &Plan, params: &[f32], state: &[f32], input: &str) -> String {
    let tensor = |range: &Option<std::ops::Range<usize>>, values: &[f32]| range.as_ref().map(|r| values[r.clone()].to_vec()).unwrap_or_default();
    // Maps are NCHW inside the graph (ONNX's layout for Conv); flat vectors [N, F].
    let mut x = b.node("Transpose", &[input], vec![ints("perm", &[0, 3, 1, 2])]);
    let mut shape = Shape::map(plan.input.h, plan.input.w, plan.input.c);
    for (i, layer) in plan.layers.iter().enumerate() {
        let p = tensor(&layer.params, params);
        let s = tensor(&layer.state, state);
        x = match &layer.op {
            LayerOp::Conv2d(d) => {
                // Keras' kernel [kh, kw, in, out] as ONNX's [out, in, kh, kw].
                let mut w = vec![0.0; d.kernel_len()];
                for ky in 0..d.kernel_h {
                    for kx in 0..d.kernel_w {
                        for ci in 0..d.in_c {
                            for co in 0..d.out_c {
                                w[((co * d.in_c + ci) * d.kernel_h + ky) * d.kernel_w + kx] = p[((ky * d.kernel_w + kx) * d.in_c + ci) * d.out_c + co];
                            }
                        }
                    }
                }
                let wn = b.weight(&format!("layer{i}.kernel"), &[d.out_c, d.in_c, d.kernel_h, d.kernel_w], &w);
                let bn = b.weight(&format!("layer{i}.bias"), &[d.out_c], &p[d.kernel_len()..]);
                let (bottom, right) = ((d.out_h() - 1) * d.stride + d.kernel_h - d.pad_top(), (d.out_w() - 1) * d.stride + d.kernel_w - d.pad_left());
                // What the output's last row and column read beyond the input, as padding after.
                let pads = [d.pad_top(), d.pad_left(), bottom.saturating_sub(d.in_h), right.saturating_sub(d.in_w)].map(|v| v as i64);
                let attrs = vec![
                    ints("kernel_shape", &[d.kernel_h as i64, d.kernel_w as i64]),
                    ints("strides", &[d.stride as i64, d.stride as i64]),
                    ints("pads", &pads),
                ];
                let y = b.node("Conv", &[&x, &wn, &bn], attrs);
                if d.relu {
                    b.node("Relu", &[&y], vec![])
                } else {
                    y
                }
            }
            LayerOp::MaxPool(d) => b.node("MaxPool", &[&x], vec![ints("kernel_shape", &[d.size as i64, d.size as i64]), ints("strides", &[d.stride as i64, d.stride as i64])]),
            LayerOp::Dropout(_) => x,
            LayerOp::Gap(_) => {
                let pooled = b.node("GlobalAveragePool", &[&x], vec![]);
                b.node("Flatten", &[&pooled], vec![int("axis", 1)])
            }
            LayerOp::GlobalMaxPool(_) => {
                let pooled = b.node("GlobalMaxPool", &[&x], vec![]);
                b.node("Flatten", &[&pooled], vec![int("axis", 1)])
            }
            LayerOp::Flatten(_) => {
                // Keras flattens NHWC: back to channels last first.
                let nhwc = b.node("Transpose", &[&x], vec![ints("perm", &[0, 2, 3, 1])]);
                b.node("Flatten", &[&nhwc], vec![int("axis", 1)])
            }
            LayerOp::Dense(d) => {
                let wn = b.weight(&format!("layer{i}.kernel"), &[d.in_dim, d.out_dim], &p[..d.kernel_len()]);
                let bn = b.weight(&format!("layer{i}.bias"), &[d.out_dim], &p[d.kernel_len()..]);
                let product = b.node("MatMul", &[&x, &wn], vec![]);
                let y = b.node("Add", &[&product, &bn], vec![]);
                if d.relu {
                    b.node("Relu", &[&y], vec![])
                } else {
                    y
                }
            }
            LayerOp::BatchNorm(d) => {
                let c = d.channels();
                let names = ["gamma", "beta", "moving_mean", "moving_variance"].map(|n| format!("layer{i}.{n}"));
                let values = [&p[..c], &p[c..2 * c], &s[..c], &s[c..2 * c]];
                let inputs: Vec<String> = names.iter().zip(values).map(|(n, v)| b.weight(n, &[c], v)).collect();
                let epsilon = float("epsilon", crate::layers::bn::EPSILON as f32);
                b.node("BatchNormalization", &[&x, &inputs[0], &inputs[1], &inputs[2], &inputs[3]], vec![epsilon])
            }
            LayerOp::Relu(_) => b.node("Relu", &[&x], vec![]),
            LayerOp::L2Norm(_) => {
                // x * min(1 / sqrt(sum x^2), 1e12), as Keras' UnitNormalization.
                let squares = b.node("ReduceSumSquare", &[&x], vec![ints("axes", &[1]), int("keepdims", 1)]);
                let norm = b.node("Sqrt", &[&squares], vec![]);
                let inverse = b.node("Reciprocal", &[&norm], vec![]);
                let bound = b.weight("l2norm.max_scale", &[1], &[crate::layers::l2norm::MAX_SCALE as f32]);
                let scale = b.node("Min", &[&inverse, &bound], vec![]);
                b.node("Mul", &[&x, &scale], vec![])
            }
        };
        shape = layer.op.output();
    }
    debug_assert!(shape.flat);
    x
}

fn model(graph: GraphProto, doc: String) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "gpu-siamese".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
    }
}

/// The tower as an ONNX model: input `images` [batch, h, w, c], output `embedding` [batch, dim].
pub fn tower_model(plan: &Plan, params: &[f32], state: &[f32]) -> ModelProto {
    let mut b = Builder { prefix: "", nodes: Vec::new(), weights: Vec::new(), count: 0 };
    let out = tower(&mut b, plan, params, state, "images");
    b.nodes.push(NodeProto { input: vec![out], output: vec!["embedding".into()], name: "embedding".into(), op_type: "Identity".into(), attribute: vec![] });
    let (h, w, c) = (plan.input.h, plan.input.w, plan.input.c);
    let graph = GraphProto {
        node: b.nodes,
        name: "tower".into(),
        initializer: b.weights,
        doc_string: format!("gpu-siamese tower {}", plan.spec),
        input: vec![value("images", &[None, Some(h), Some(w), Some(c)])],
        output: vec![value("embedding", &[None, Some(plan.embedding_dim)])],
    };
    model(graph, format!("images: NHWC float32 in [0, 1] (bytes / 255), {h}x{w}x{c}; embedding: [batch, {}]", plan.embedding_dim))
}

/// The twin's distance: inputs `a` and `b` (as `images`), output `distance` [batch],
/// sqrt(max(sum((ea - eb)^2), 1e-7)), the towers sharing their weights.
pub fn pair_model(plan: &Plan, params: &[f32], state: &[f32]) -> ModelProto {
    let mut b = Builder { prefix: "a/", nodes: Vec::new(), weights: Vec::new(), count: 0 };
    let ea = tower(&mut b, plan, params, state, "a");
    b.prefix = "b/";
    let eb = tower(&mut b, plan, params, state, "b");
    b.prefix = "";
    let diff = b.node("Sub", &[&ea, &eb], vec![]);
    let squares = b.node("ReduceSumSquare", &[&diff], vec![ints("axes", &[1]), int("keepdims", 0)]);
    let floor = b.weight("distance.epsilon", &[1], &[crate::objective::DISTANCE_EPSILON]);
    let clamped = b.node("Max", &[&squares, &floor], vec![]);
    let d = b.node("Sqrt", &[&clamped], vec![]);
    b.nodes.push(NodeProto { input: vec![d], output: vec!["distance".into()], name: "distance".into(), op_type: "Identity".into(), attribute: vec![] });
    let (h, w, c) = (plan.input.h, plan.input.w, plan.input.c);
    let graph = GraphProto {
        node: b.nodes,
        name: "pair".into(),
        initializer: b.weights,
        doc_string: format!("gpu-siamese twin distance, tower {}", plan.spec),
        input: vec![value("a", &[None, Some(h), Some(w), Some(c)]), value("b", &[None, Some(h), Some(w), Some(c)])],
        output: vec![value("distance", &[None])],
    };
    model(graph, format!("a, b: NHWC float32 in [0, 1], {h}x{w}x{c}; distance: [batch], the tutorial's sqrt(max(sum of squares, 1e-7))"))
}

/// Writes `trained`'s tower (and, with `pair`, its distance) as ONNX files.
#[cfg(not(target_arch = "wasm32"))]
pub fn export(trained: &crate::evaluate::Trained, onnx: &std::path::Path, pair: Option<&std::path::Path>) -> Result<(), String> {
    let write = |path: &std::path::Path, model: ModelProto| crate::checkpoint::write_atomically(path, &model.encode_to_vec()).map_err(|e| format!("cannot write {}: {e}", path.display()));
    write(onnx, tower_model(&trained.plan, &trained.params, &trained.state))?;
    let (h, w, c) = (trained.plan.input.h, trained.plan.input.w, trained.plan.input.c);
    println!(
        "written: {} (ONNX opset {OPSET}; input images [batch, {h}, {w}, {c}] NHWC float32 in [0, 1], output embedding [batch, {}])",
        onnx.display(),
        trained.plan.embedding_dim
    );
    if let Some(path) = pair {
        write(path, pair_model(&trained.plan, &trained.params, &trained.state))?;
        println!("written: {} (inputs a and b as above, output distance [batch])", path.display());
    }
    Ok(())
}
