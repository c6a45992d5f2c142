#!/usr/bin/env python3
"""Write the fuzzers' seed inputs (fuzz/seeds/<target>/) and the probe's crash inputs
(tests/fixtures/fuzz/<target>/): small, valid-looking files of every format mpdr reads, and
the hand-made ones that once panicked or aborted it. Standard library only; deterministic."""
import io, json, os, struct, sys, zipfile, gzip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
CRASHES = os.path.join(ROOT, "tests", "fixtures", "fuzz")


def put(base, target, name, data):
    d = os.path.join(base, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def wav(rate=16000, channels=1, bits=16, fmt=1, frames=64, data_size=None, extra=b""):
    block = channels * bits // 8
    if fmt == 3:
        body = b"".join(struct.pack("<f", (i % 7) / 7.0) for i in range(frames * channels))
    elif bits == 8:
        body = bytes((128 + i) % 256 for i in range(frames * channels))
    elif bits == 24:
        body = b"".join(struct.pack("<i", i * 1000)[:3] for i in range(frames * channels))
    else:
        body = b"".join(struct.pack("<" + {16: "h", 32: "i"}[bits], (i * 300) % 30000) for i in range(frames * channels))
    size = len(body) if data_size is None else data_size
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + extra + b"data" + struct.pack("<I", size) + body
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def npy(shape, descr="<f4", fortran=False, count=None, header_extra=""):
    n = 1
    for s in shape:
        n *= s
    n = n if count is None else count
    shape_txt = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, %s}" % (descr, "True" if fortran else "False", shape_txt, header_extra)
    h = h.encode("utf-8")
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    data = b"".join(struct.pack("<f", float(i % 13)) for i in range(min(n, 4096)))
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data


def npz(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def idx(dims, code=0x08):
    n = 1
    for d in dims:
        n *= d
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(i % 256 for i in range(n))


def safetensors(tensors, extra=None):
    header, data = {}, b""
    for name, shape in tensors.items():
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * n]}
        data += b"\0" * (4 * n)
    if extra:
        header.update(extra)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def manifest(n_mels=8, frames=2, hidden=(16,), latent=4, scaler_len=None, std=1.0, extra=""):
    d = n_mels * frames
    k = d if scaler_len is None else scaler_len
    h = ", ".join(str(x) for x in hidden)
    return f"""schema_version = 1
kind = "ae"
manifold = []

[energy]
type = "ae"
latent = {latent}

[energy.encoder]
type = "mlp"
input = {d}
hidden = [{h}]
output = {latent}
activation = "relu"

[energy.decoder]
type = "mlp"
input = {latent}
hidden = [{h}]
output = {d}
activation = "relu"

[features]
sample_rate = 16000
n_fft = 1024
hop_length = 512
n_mels = {n_mels}
frames = {frames}
fmin = 0.0
power = 2.0
pad_mode = "constant"

[scaler]
mean = [{", ".join(["0.5"] * k)}]
std = [{", ".join([str(std)] * k)}]
clamp = 3.0

[threshold]
value = 0.9
method = "manual"
{extra}"""


def main():
    # Seeds: one of each shape the readers take.
    put(SEEDS, "wav", "mono16.wav", wav())
    put(SEEDS, "wav", "stereo16.wav", wav(channels=2))
    put(SEEDS, "wav", "float32.wav", wav(fmt=3, bits=32))
    put(SEEDS, "wav", "pcm8.wav", wav(bits=8))
    put(SEEDS, "wav", "pcm24_48k.wav", wav(bits=24, rate=48000))
    put(SEEDS, "wav", "list_chunk.wav", wav(extra=b"LIST" + struct.pack("<I", 4) + b"INFO"))
    put(SEEDS, "npy", "logmel.npy", npy((128, 12)))
    put(SEEDS, "npy", "fortran.npy", npy((128, 12), fortran=True))
    put(SEEDS, "npy", "vector.npy", npy((16,)))
    put(SEEDS, "npz", "table.npz", npz({"X.npy": npy((4, 3)), "y.npy": npy((4,))}))
    put(SEEDS, "idx", "images.idx", idx([2, 28, 28]))
    put(SEEDS, "idx", "labels.idx", idx([5]))
    put(SEEDS, "idx", "images.idx.gz", gzip.compress(idx([1, 28, 28]), mtime=0))
    for name in ["monitor.example.toml"]:
        put(SEEDS, "monitor_toml", name, open(os.path.join(ROOT, "config", name), "rb").read())
    put(SEEDS, "monitor_toml", "sinks.toml", """[server]
listen = "127.0.0.1:0"
[[stream]]
name = "fan"
model = "models/fan"
source = { type = "file", path = "a.wav", realtime = true, speed = 2.0, loop = false }
detect = { window_s = 10, hop_s = 1, on_delay_s = 30, off_delay_s = 30, threshold = "model" }
[[sink]]
type = "webhook"
url = "http://user:pw@127.0.0.1:9/hook"
timeout_s = 5
[[sink]]
type = "mqtt"
host = "127.0.0.1"
topic = "mpdr/{stream}/{kind}"
[[sink]]
type = "modbus"
listen = "127.0.0.1:1502"
[[sink]]
type = "exec"
command = ["/bin/true", "{stream}"]
""")
    for name in ["train.example.toml", "train.demo-models.toml", "train.dcase-official.toml"]:
        put(SEEDS, "train_toml", name, open(os.path.join(ROOT, "config", name), "rb").read())
    put(SEEDS, "manifest", "small.toml", manifest())
    put(SEEDS, "safetensors", "ae.safetensors", safetensors({"enc.0.weight": [16, 16], "enc.0.bias": [16]}))
    put(SEEDS, "http", "get.txt", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n")
    put(SEEDS, "http", "post.txt", "POST /readyz?x=1 HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd")
    put(SEEDS, "modbus", "reads.bin", bytes([3, 0, 0, 0, 20, 0xFF, 4, 0, 10, 0, 9, 0xFF, 6, 0, 18, 0, 1, 0xFF, 16, 0, 18, 0, 1, 2, 0, 1]))

    # The probe's crash inputs (issue 15) and the ones the fuzzers found: each must now be an
    # error, never a panic or an abort.
    put(CRASHES, "npy", "non_ascii_dtype.npy", npy((4,), descr="<fé4"))
    put(CRASHES, "npy", "shape_overflow.npy", npy((128, 2**57)))
    put(CRASHES, "npy", "shape_product_overflow.npy", npy((2**40, 2**40)))
    put(CRASHES, "npy", "fortran_short.npy", npy((128, 12), fortran=True, count=100))
    put(CRASHES, "npy", "fortran_3d.npy", npy((4, 4, 4), fortran=True))
    put(CRASHES, "wav", "data_larger_than_file.wav", wav(data_size=0x7FFFFFF0))
    put(CRASHES, "wav", "truncated_samples.wav", wav(frames=64)[:-37])
    put(CRASHES, "wav", "zero_channels.wav", wav(channels=0))
    put(CRASHES, "wav", "zero_rate.wav", wav(rate=0))
    for key, m in {
        "input_zero": manifest().replace("input = 16", "input = 0", 1),
        "hidden_zero": manifest(hidden=(0, 16)),
        "hidden_2_40": manifest(hidden=(2**40, 16)),
        "hop_length_zero": manifest().replace("hop_length = 512", "hop_length = 0"),
        "n_mels_zero": manifest().replace("n_mels = 8", "n_mels = 0"),
        "frames_zero": manifest().replace("frames = 2", "frames = 0"),
        "scaler_40": manifest(scaler_len=40),
        "n_fft_zero": manifest().replace("n_fft = 1024", "n_fft = 0"),
        "power_negative": manifest().replace("power = 2.0", "power = -2.0"),
        "no_scaler": manifest().split("[scaler]")[0] + "[threshold]\nvalue = 0.9\nmethod = \"manual\"\n",
        "latent_zero": manifest(latent=0),
        "std_zero": manifest(std=0.0),
        "n_mels_64": manifest().replace("n_mels = 8", "n_mels = 64"),
        "threshold_nan": manifest().replace("value = 0.9", "value = nan"),
    }.items():
        put(CRASHES, "manifest", key + ".toml", m)
    put(CRASHES, "safetensors", "header_past_end.safetensors", struct.pack("<Q", 2**63) + b"{}")
    put(CRASHES, "safetensors", "offsets_past_end.safetensors",
        safetensors({}, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}))
    put(CRASHES, "http", "pipelined_3000.txt", "GET /metrics HTTP/1.1\r\n\r\n" * 3000)
    put(CRASHES, "http", "huge_length.txt", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n")
    put(CRASHES, "modbus", "short_frames.bin", bytes([3, 0xFF, 16, 0, 18, 0, 200, 1, 0xFF, 6, 0xFF, 0xFF, 16]))


if __name__ == "__main__":
    sys.exit(main())
