"""The dream stage (start image + instruction -> video) on a tiny random image-to-video pipeline.

Real weights (LTX-Video, Wan, CogVideoX: gigabytes) cannot be downloaded here, so
``tiny_random_ltx_i2v`` builds a *test double*: an ``LTXImageToVideoPipeline``
with the real diffusers classes but tiny random configs (~115k parameters) and
a word-level tokenizer made in code, saved with ``save_pretrained`` and loaded
back through the same ``--model FOLDER`` path users take. Its videos are noise;
the tests check the plumbing: sizes, frame counts, seeds, prompts, files, errors.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.__main__ import build_parser, main
from flows.extract.video import read_video
from flows.extract.video_model import (HAND_NEGATIVE_PROMPT, HAND_PROMPT, STATIC_CAMERA_PROMPT, VIDEO_GENERATORS,
                                       DiffusersVideoGenerator, DreamError, build_prompt, dream_video,
                                       generation_size, sidecar_path)

INSTRUCTION = "push the T-block into the target"


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest (and steadiest on a busy CI box) on one thread."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_tokenizer():
    """A T5-like word-level fast tokenizer built in code (no download): <pad>=0, </s>=1 appended, <unk>=2."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    text = " ".join([INSTRUCTION, HAND_PROMPT, STATIC_CAMERA_PROMPT, HAND_NEGATIVE_PROMPT]).lower()
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=128)


def tiny_random_ltx_i2v(path: Path) -> Path:
    """Test double for real weights: a ~115k-parameter random LTXImageToVideoPipeline saved with save_pretrained.

    VAE: 4x spatial and 4x temporal compression (2 down blocks), 8 latent channels; transformer: 1 layer,
    4 heads of 8; text encoder: a 1-layer T5 encoder (d_model 32 = the transformer's caption_channels).
    """
    import torch
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                           num_heads=4, relative_attention_num_buckets=8))
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=1, caption_channels=32)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    pipe = LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, transformer=transformer)
    assert sum(p.numel() for m in (text_encoder, transformer, vae) for p in m.parameters()) < 200_000
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_random_ltx_i2v(tmp_path_factory.mktemp("tiny-ltx-i2v"))


@pytest.fixture
def start_image(tmp_path):
    """A 64x48 (WxH) start image: smooth colour gradients and a dark block."""
    import imageio.v2 as imageio

    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    img[20:32, 24:40] = 30
    path = tmp_path / "start.png"
    imageio.imwrite(path, img)
    return path


def dream_args(image, model, out, *extra):
    return ["dream", "--image", str(image), "--prompt", INSTRUCTION, "-o", str(out), "--model", str(model),
            "--num-frames", "9", "--height", "32", "--width", "64", "--steps", "2", "--device", "cpu",
            "--no-progress", *extra]


# ---------------------------------------------------------------------- no model
def test_prompt_suffixes_sizes_and_sidecar_name():
    p = build_prompt("  push the T-block\n into the target ")
    assert p == f"push the T-block into the target. {HAND_PROMPT} {STATIC_CAMERA_PROMPT}"
    assert "hand" in HAND_PROMPT and "no robot" in HAND_PROMPT
    assert build_prompt("open the drawer!", hand_prompt=False) == f"open the drawer! {STATIC_CAMERA_PROMPT}"
    assert build_prompt("open the drawer", hand_prompt=False, static_camera_prompt=False) == "open the drawer."
    with pytest.raises(DreamError, match="empty"):
        build_prompt("   ")
    # the image's aspect ratio at about the pipeline's pixel count, sides multiples of 32
    assert generation_size((480, 640), area=512 * 704) == (512, 704)
    h, w = generation_size((480, 480), area=480 * 832)
    assert h == w and h % 32 == 0 and abs(h * w - 480 * 832) < 0.1 * 480 * 832
    assert generation_size((480, 640), area=1, height=256) == (256, 352)  # 256 * 4/3 = 341 -> 352
    assert generation_size((480, 640), area=1, width=400) == (288, 400)  # 300 -> 288 (multiple of 32)
    assert generation_size((480, 640), area=1, height=100, width=200) == (100, 200)
    assert sidecar_path("out/video.mp4") == Path("out/video.mp4.json")
    assert "diffusers" in VIDEO_GENERATORS and "dream" in build_parser()._subparsers._group_actions[0].choices


def test_missing_image_and_bad_models_give_clear_errors(tmp_path, capsys, monkeypatch):
    out = tmp_path / "v.mp4"
    # missing start image: named, before any model is loaded
    assert main(["dream", "--image", str(tmp_path / "nope.png"), "--prompt", "x", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nope.png: no such image file" in err
    img = tmp_path / "start.png"
    import imageio.v2 as imageio
    imageio.imwrite(img, np.zeros((32, 32, 3), np.uint8))

    def run(model, *extra):
        assert main(["dream", "--image", str(img), "--prompt", "x", "-o", str(out), "--model", model,
                     "--no-progress", *extra]) == 1
        assert not out.exists() and not sidecar_path(out).exists()
        return capsys.readouterr().err

    # unknown hub id while offline: says the weights cannot be downloaded and to pass a local folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = run("dream2flow-gym-tests/no-such-video-model")
    assert "dream2flow-gym-tests/no-such-video-model: the model weights cannot be downloaded" in err
    assert "--model DIR" in err and "local folder" in err
    # a path that does not exist (and is no hub id), a folder that is not a pipeline
    assert "./no/such/model: no such model folder" in run("./no/such/model")
    (tmp_path / "empty").mkdir()
    assert "not a diffusers pipeline folder (no model_index.json)" in run(str(tmp_path / "empty"))
    # a pipeline that takes no start image (text-to-image) is refused before its weights are read
    t2i = tmp_path / "t2i"
    t2i.mkdir()
    (t2i / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert "StableDiffusionPipeline does not take a start image" in run(str(t2i))
    # an mp4 needs even sides: refused before the model is loaded (a .gif takes any size)
    odd = tmp_path / "odd.png"
    imageio.imwrite(odd, np.zeros((31, 40, 3), np.uint8))
    assert main(["dream", "--image", str(odd), "--prompt", "x", "-o", str(out), "--model", str(t2i)]) == 1
    assert "40x31 (WxH)" in capsys.readouterr().err
    # diffusers missing: says what to install
    monkeypatch.setitem(sys.modules, "diffusers", None)
    assert "pip install 'dream2flow-gym[dream]'" in run(str(t2i))


# ---------------------------------------------------------------------- tiny random pipeline
def test_cli_dream_writes_video_and_sidecar_and_respects_seed_and_overwrite(tmp_path, tiny_model, start_image,
                                                                            one_torch_thread, capsys):
    out = tmp_path / "dreams" / "video.mp4"
    assert main(dream_args(start_image, tiny_model, out, "--seed", "3", "--fps", "10")) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}: 9 frames 64x48" in captured.out and "python -m flows extract" in captured.out
    assert "Loading pipeline components" not in captured.err and "it/s" not in captured.err  # --no-progress
    frames, fps = read_video(out)
    assert frames.shape == (9, 48, 64, 3) and fps == pytest.approx(10)  # resized back to the start image's size
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["prompt"] == build_prompt(INSTRUCTION) and meta["instruction"] == INSTRUCTION
    assert meta["negative_prompt"] == HAND_NEGATIVE_PROMPT and meta["hand_prompt"] is True
    assert meta["model"] == str(tiny_model) and meta["seed"] == 3 and meta["generator"] == f"diffusers:{tiny_model} seed=3"
    assert meta["frames"] == 9 and meta["output_size"] == [64, 48] and meta["image_size"] == [64, 48]
    s = meta["settings"]
    assert s["pipeline"] == "LTXImageToVideoPipeline" and s["steps"] == 2 and s["generation_size"] == [64, 32]
    assert s["device"] == "cpu" and s["dtype"] == "float32" and s["num_frames"] == 9 and meta["fps"] == 10
    assert "diffusers" in meta["versions"] and meta["image"] == str(start_image) and meta["load_s"] > 0

    # never overwrite without --overwrite: the video and its sidecar stay as they were
    before = out.read_bytes(), sidecar_path(out).read_text()
    assert main(dream_args(start_image, tiny_model, out, "--seed", "4")) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out.read_bytes(), sidecar_path(out).read_text()) == before
    sidecar_path(out).unlink()  # the sidecar alone also blocks: here only the video is left
    assert main(dream_args(start_image, tiny_model, out, "--seed", "4")) == 1
    capsys.readouterr()

    # same seed, same video; --overwrite replaces it
    assert main(dream_args(start_image, tiny_model, out, "--seed", "3", "--fps", "10", "--overwrite")) == 0
    np.testing.assert_array_equal(read_video(out)[0], frames)
    assert json.loads(sidecar_path(out).read_text())["seed"] == 3


def test_dream_video_seed_prompt_image_and_size_reach_the_model(tmp_path, tiny_model, start_image, one_torch_thread):
    gen = VIDEO_GENERATORS.create("diffusers", model=str(tiny_model), device="cpu")  # loaded once, reused
    kw = dict(generator=gen, num_frames=9, height=32, width=64, steps=2, progress=False)
    a = dream_video(start_image, INSTRUCTION, tmp_path / "a.gif", seed=0, **kw)
    b = dream_video(start_image, INSTRUCTION, tmp_path / "b.gif", seed=0, **kw)
    c = dream_video(start_image, INSTRUCTION, tmp_path / "c.gif", seed=1, **kw)
    d = dream_video(start_image, INSTRUCTION, tmp_path / "d.gif", seed=0, hand_prompt=False, **kw)
    e = dream_video(255 - read_video(start_image)[0][0], INSTRUCTION, tmp_path / "e.gif", seed=0, **kw)
    assert a.frames.shape == (9, 48, 64, 3) and a.frames.dtype == np.uint8 and a.fps == 25  # LTX's frame_rate
    assert a.metadata["model"] == str(tiny_model) and e.metadata["image"] == "<array>"
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.abs(a.frames.astype(int) - c.frames).mean() > 1  # the seed changes the video
    assert np.abs(a.frames.astype(int) - d.frames).mean() > 1  # so does the prompt: it reaches the text encoder
    assert np.abs(a.frames.astype(int) - e.frames).mean() > 1  # and the start image: it conditions the video
    assert d.metadata["prompt"] == build_prompt(INSTRUCTION, hand_prompt=False) and HAND_PROMPT not in d.metadata["prompt"]
    assert d.metadata["negative_prompt"] is None
    assert read_video(a.video)[0].shape == (9, 48, 64, 3)
    # the generation size (--native-size), and a PNG-folder output
    n = dream_video(start_image, INSTRUCTION, tmp_path / "frames", keep_size=False, seed=0, **kw)
    assert n.frames.shape == (9, 32, 64, 3) and read_video(n.video)[0].shape == (9, 32, 64, 3)
    assert (tmp_path / "frames.json").is_file()
    # --overwrite of a frame folder with a shorter video leaves no stale frames
    n5 = dream_video(start_image, INSTRUCTION, tmp_path / "frames", keep_size=False, overwrite=True,
                     **{**kw, "num_frames": 5})
    assert n5.frames.shape[0] == 5 and read_video(n5.video)[0].shape == (5, 32, 64, 3)


def test_text_to_video_class_is_swapped_for_its_image_to_video_sibling(tmp_path, tiny_model, start_image,
                                                                       one_torch_thread, monkeypatch):
    """Hub LTX-Video's model_index.json names LTXPipeline (text-to-video); the same weights run as LTXImageToVideoPipeline."""
    t2v = tmp_path / "ltx-t2v"
    shutil.copytree(tiny_model, t2v)
    index = json.loads((t2v / "model_index.json").read_text())
    (t2v / "model_index.json").write_text(json.dumps({**index, "_class_name": "LTXPipeline"}))
    gen = VIDEO_GENERATORS.create("diffusers", model=str(t2v), device="cpu")
    assert isinstance(gen, DiffusersVideoGenerator)
    frames, settings = gen.generate(read_video(start_image)[0][0], "push", num_frames=9, height=32, width=64,
                                    steps=2, progress=False)
    assert settings["pipeline"] == "LTXImageToVideoPipeline" and frames.shape == (9, 32, 64, 3)
    # without --height/--width: LTX's default 512x704 pixel count at the start image's aspect ratio
    pipe = gen.load()
    assert gen.default_size(pipe, gen._defaults(pipe)) == (512, 704, False)
    assert gen.default_fps(gen._defaults(pipe)) == 25
    # --pipeline forces a class; one that is not in diffusers is named
    with pytest.raises(DreamError, match="NoSuchPipeline.*not in diffusers"):
        DiffusersVideoGenerator(model=str(t2v), pipeline="NoSuchPipeline", device="cpu").load()
    # --offload needs accelerate: say so
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ImportError, match="pip install accelerate"):
        DiffusersVideoGenerator(model=str(t2v), offload=True, device="cpu").load()
