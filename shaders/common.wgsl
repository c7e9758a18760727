// What every kernel shares, written once: the host prepends this file to each shader when it builds
// the shader's pipelines (so a line number in a shader's compile error counts this file's lines too).

// Every entry point declares @workgroup_size(256); the host's WORKGROUP_SIZE.
const WORKGROUP: u32 = 256u;

// The values that change every step, one small uniform buffer written by the host before each
// submission (StepUniform on the host). A step's batch of pairs may run in micro-batches, slices of
// micro_pairs pairs from micro_start (see twin.rs); batch_pairs is the whole batch's.
struct Step {
    step: u32, training: u32, loss_slot: u32, alpha: f32,
    batch_start: u32, valid_pairs: u32, batch_pairs: u32, micro_start: u32,
    micro_pairs: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

// Image `local` of a micro-batch (its pairs' first images, then their second images) is this image of
// the whole batch: what dropout's masks and augmentation's draws hash, so that a batch run in
// micro-batches draws what it draws whole.
fn batch_image(st: Step, local: u32) -> u32 {
    if (st.micro_pairs == 0u) {
        return local;
    }
    return (local / st.micro_pairs) * st.batch_pairs + st.micro_start + local % st.micro_pairs;
}

// The weight gradient's chunks (WeightChunks on the host): a branch's output positions over the whole
// batch, taken in 2x2 blocks image by image, are cut into `chunks` runs of equal length (the last ones
// shorter or empty), each a lane's partial sum. A micro-batch of `images` images a branch from image
// `first` holds the blocks [first, first + images) * per_image and adds them to the chunks they meet;
// a chunk that began in an earlier micro-batch goes on from the partial sum that one stored, so the
// sums are the whole batch's to the bit. For the micro-batch's chunk `local`: the blocks it adds, the
// chunk's index, and whether it goes on from a stored sum.
struct ChunkRun {
    start: u32,
    end: u32,
    chunk: u32,
    continues: bool,
}

// A chunk's length in blocks: the steps every lane takes, so that a workgroup's lanes stay together. A
// bound of constants alone, so that a loop over it is uniform control flow (its body shares loads).
fn weight_chunk_len(per_image: u32, whole_images: u32, chunks: u32) -> u32 {
    return (whole_images * per_image + chunks - 1u) / chunks;
}

fn weight_chunk(local: u32, per_image: u32, whole_images: u32, chunks: u32, first: u32, images: u32) -> ChunkRun {
    let blocks = whole_images * per_image;
    let len = weight_chunk_len(per_image, whole_images, chunks);
    let b0 = first * per_image;
    let chunk = b0 / len + local;
    let chunk_start = chunk * len;
    let start = max(chunk_start, b0);
    let end = max(min(min(chunk_start + len, blocks), (first + images) * per_image), start);
    return ChunkRun(start, end, chunk, chunk_start < b0);
}

// How many chunks the micro-batch meets; the last micro-batch also takes the empty chunks after the end.
fn micro_chunks(per_image: u32, whole_images: u32, chunks: u32, first: u32, images: u32) -> u32 {
    let len = weight_chunk_len(per_image, whole_images, chunks);
    let b1 = (first + images) * per_image;
    let last = select((b1 + len - 1u) / len, chunks, first + images >= whole_images);
    return last - first * per_image / len;
}

// Dispatches are a 2-D grid of 1-D workgroups so that more than 65535 workgroups fit.
fn thread_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WORKGROUP + lid;
}

// Keras' K.epsilon(), the floor of a squared distance.
const DISTANCE_EPSILON: f32 = 1e-7;

// PCG-style integer hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", 2020), in wrapping
// u32 arithmetic; reference::pcg_hash on the host.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The same hash of four values at once.
fn pcg_hash4(v: vec4<u32>) -> vec4<u32> {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> vec4<u32>(28u)) + 4u)) ^ state) * 277803737u;
    return (word >> vec4<u32>(22u)) ^ word;
}

// The counter-based hash that decides dropout, a function of (layer seed, training step, element): the
// element index is hashed on its own before it meets the step's key, since a single round over
// element ^ key leaves elements a fixed stride apart slightly alike. An element is kept when the hash
// is at least round(rate * 2^32).
fn dropout_step_key(seed: u32, step: u32) -> u32 {
    return pcg_hash(step ^ pcg_hash(seed));
}

fn dropout_hash(seed: u32, step: u32, element: u32) -> u32 {
    return pcg_hash(pcg_hash(element) ^ dropout_step_key(seed, step));
}

// a * b + c rounded once, from plain multiplies and adds: WGSL's fma() need not be fused (lavapipe's is
// not). Dekker's exact product through Veltkamp's split of each factor into 12-bit halves, Knuth's
// TwoSum of the product and c, then the small terms: about 17 operations.
fn split(a: f32) -> vec2<f32> {
    let c = 4097.0 * a;
    let hi = c - (c - a);
    return vec2<f32>(hi, a - hi);
}

fn two_product_error(a: f32, b: f32, p: f32) -> f32 {
    let sa = split(a);
    let sb = split(b);
    return sa.y * sb.y - (((p - sa.x * sb.x) - sa.y * sb.x) - sa.x * sb.y);
}

fn exact_fma(a: f32, b: f32, c: f32) -> f32 {
    let p = a * b;
    let e = two_product_error(a, b, p);
    let s = p + c;
    let back = s - p;
    let t = (p - (s - back)) + (c - back);
    return s + (t + e);
}
