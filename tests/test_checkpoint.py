"""Checkpoints: exact round trips of weights and training state, tied weights stored once, and no pickle ever
executed on load."""

import json
import pickle

import pytest
import torch

from transformer_networks import cli
from transformer_networks.config import TransformerConfig
from transformer_networks.data.tokenizer import train_tokenizer
from transformer_networks.models import Seq2SeqTransformer
from transformer_networks.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_training_state,
    pack_training_state,
    recover_interrupted_save,
    resolve_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from transformer_networks.training.config import TrainConfig
from transformer_networks.training.schedules import make_scheduler


@pytest.fixture
def saved(tmp_path):
    tok = train_tokenizer(["a b c d e f"], "word")
    cfg = TransformerConfig.from_preset("tiny", vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    model = Seq2SeqTransformer(cfg).eval()
    path = save_checkpoint(
        tmp_path / "run" / "best",
        model,
        task="translation",
        config=cfg,
        train_config=TrainConfig(lr=5e-4),
        tokenizer=tok,
        step=7,
        data={"data": ["x.tsv"]},
    )
    return path, model, tok


def test_round_trip_gives_identical_outputs(saved):
    path, model, tok = saved
    ckpt = load_checkpoint(path)
    src = torch.tensor([tok.encode("a b c", eos=True)])
    tgt = torch.tensor([tok.encode("d e", bos=True)])
    torch.testing.assert_close(ckpt.model(src, tgt), model(src, tgt), rtol=0, atol=0)
    assert ckpt.step == 7 and ckpt.train_config.lr == 5e-4 and ckpt.data == {"data": ["x.tsv"]}
    # tied embeddings stay tied after loading
    assert ckpt.model.lm_head.weight is ckpt.model.decoder.embeddings.token.weight
    assert not list(path.parent.glob("*.tmp")) and not list(path.parent.glob("*.old"))


@pytest.mark.parametrize("new_is_whole", [True, False])
def test_a_kill_between_the_two_renames_loses_nothing(saved, new_is_whole):
    """save_checkpoint renames path -> path.old, then path.tmp -> path: killed in between, path is missing. The
    next save (or resume) puts the new checkpoint in place when it is whole, else the previous one."""
    path, model, tok = saved
    before = path.with_name("before")
    save_checkpoint(
        before,
        model,
        task="translation",
        config=load_checkpoint(path).config,
        train_config=TrainConfig(),
        tokenizer=tok,
        step=8,
    )
    path.rename(path.with_name("best.old"))  # the state the kill left: previous at .old, step 8 at .tmp
    before.rename(path.with_name("best.tmp"))
    if not new_is_whole:
        (path.with_name("best.tmp") / "model.safetensors").write_bytes(b"cut")
    recover_interrupted_save(path)
    assert load_checkpoint(path).step == (8 if new_is_whole else 7)
    assert not path.with_name("best.old").exists()
    # and a save that starts from that state never deletes the only whole copy
    path.rename(path.with_name("best.old"))
    save_checkpoint(
        path,
        model,
        task="translation",
        config=load_checkpoint(path.with_name("best.old")).config,
        train_config=TrainConfig(),
        tokenizer=tok,
        step=9,
    )
    assert load_checkpoint(path).step == 9


def test_a_run_directory_means_its_best_checkpoint(saved):
    path, _, _ = saved
    assert resolve_checkpoint(path.parent) == path
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        resolve_checkpoint(path.parent.parent)


def test_a_pickle_is_never_executed(saved, tmp_path):
    path, _, _ = saved
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "model.safetensors").write_bytes(pickle.dumps({"weights": Payload()}))
    with pytest.raises(CheckpointError, match="model.safetensors: .*(truncated|corrupted)"):
        load_checkpoint(path)  # caught by the checksum first
    (path / "checksums.json").unlink()  # an old-format checkpoint, or one crafted without checksums
    with pytest.raises(CheckpointError, match="model.safetensors: cannot load weights"):
        load_checkpoint(path)  # safetensors refuses it: nothing is unpickled
    assert not marker.exists()


def test_truncated_or_corrupted_files_are_clear_errors(saved):
    path, _, _ = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors: [\d,]+ bytes, expected [\d,]+ \(truncated"):
        load_checkpoint(path)
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF  # same size, one weight changed
    (path / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="model.safetensors: checksum mismatch"):
        load_checkpoint(path)
    (path / "model.safetensors").write_bytes(data)
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json: missing"):
        load_checkpoint(path)
    # Without checksums, truncation is still caught by safetensors itself
    (path / "checksums.json").unlink()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(path)


def test_config_mismatch_is_a_clear_error(saved):
    path, _, _ = saved
    values = json.loads((path / "config.json").read_text())
    values["n_layers"] = 2
    (path / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_training_state_round_trip(tmp_path, saved):
    path, model, tok = saved
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = make_scheduler(opt, "cosine", warmup=2, total_steps=10)
    for _ in range(3):
        loss = model(torch.tensor([[4, 5, 3]]), torch.tensor([[2, 6]])).sum()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    state = pack_training_state(opt, sched, {"step": 3})
    save_checkpoint(
        tmp_path / "last",
        model,
        task="translation",
        config=model.cfg,
        train_config=TrainConfig(),
        tokenizer=tok,
        training_state=state,
    )
    expected_rng = torch.rand(3)

    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched2 = make_scheduler(opt2, "cosine", warmup=2, total_steps=10)
    torch.manual_seed(123)
    counters = restore_training_state(load_training_state(tmp_path / "last"), opt2, sched2)
    assert counters == {"step": 3}
    torch.testing.assert_close(torch.rand(3), expected_rng, rtol=0, atol=0)  # the RNG continues where it was
    assert sched2.last_epoch == 3 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt2.state[p][key], opt.state[p][key], rtol=0, atol=0)


def test_average_of_two_checkpoints_is_their_mean(tmp_path, capsys):
    tok = train_tokenizer(["a b c d e f"], "word")
    cfg = TransformerConfig.from_preset("tiny", vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(Seq2SeqTransformer(cfg).eval())
        save_checkpoint(
            tmp_path / f"c{seed}",
            models[-1],
            task="translation",
            config=cfg,
            train_config=TrainConfig(),
            tokenizer=tok,
            step=seed * 10,
        )
    assert cli.main(["average", str(tmp_path / "c1"), str(tmp_path / "c2"), "--out", str(tmp_path / "avg")]) == 0
    avg = load_checkpoint(tmp_path / "avg")
    for name, value in avg.model.state_dict().items():
        expected = (models[0].state_dict()[name] + models[1].state_dict()[name]) / 2
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)
    assert avg.step == 20 and avg.model.lm_head.weight is avg.model.decoder.embeddings.token.weight
    capsys.readouterr()
    # The output is never overwritten without --overwrite; a different model is refused.
    assert cli.main(["average", str(tmp_path / "c1"), str(tmp_path / "c2"), "--out", str(tmp_path / "avg")]) == 2
    other = TransformerConfig.from_preset("tiny", vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=2, d_ff=32)
    save_checkpoint(
        tmp_path / "c3",
        Seq2SeqTransformer(other),
        task="translation",
        config=other,
        train_config=TrainConfig(),
        tokenizer=tok,
    )
    assert cli.main(["average", str(tmp_path / "c1"), str(tmp_path / "c3"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "only checkpoints of one model can be averaged" in err
    assert not (tmp_path / "x").exists()


def test_training_keeps_the_last_n_checkpoints_for_averaging(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 50, encoding="utf-8")
    argv = [
        "train",
        "lm",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--preset",
        "tiny",
        "--set",
        "d_model=16",
        "--set",
        "n_heads=2",
        "--set",
        "n_layers=1",
        "--max-steps",
        "8",
        "--eval-every",
        "2",
        "--block-size",
        "8",
        "--set",
        "keep_checkpoints=3",
        "--quiet",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    assert [p.name for p in sorted((tmp_path / "r").glob("step-*"))] == ["step-0000004", "step-0000006", "step-0000008"]
    assert cli.main(["average", str(tmp_path / "r"), "--last", "3", "--out", str(tmp_path / "r" / "avg")]) == 0
    assert load_checkpoint(tmp_path / "r" / "avg").step == 8
    assert cli.main(["average", str(tmp_path / "r"), "--last", "4", "--out", str(tmp_path / "a2")]) == 2
    assert "fewer than --last 4" in capsys.readouterr().err


def test_a_full_disk_is_a_clear_error_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    import errno

    from transformer_networks import checkpoints as checkpoint_module  # where checkpoint files are written
    from transformer_networks.training.tasks import DataSpec
    from transformer_networks.training.trainer import TrainingError, train

    text = tmp_path / "t.txt"
    text.write_text("hello world, hello disk\n" * 40, encoding="utf-8")
    cfg = TransformerConfig.from_preset("tiny", d_model=16, n_heads=2, n_layers=1, d_ff=32)
    real, calls = checkpoint_module.save_model, []

    def save_model(model, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) > 2:  # the first evaluation's best/ and last/ are written; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, filename, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_model", save_model)
    with pytest.raises(
        TrainingError,
        match=r"step 4: cannot write the checkpoint .*best: No space left on device; "
        r"the previous .*best is intact",
    ):
        train(
            "lm",
            tmp_path / "run",
            data=DataSpec(data=[str(text)]),
            model_config=cfg,
            train_config=TrainConfig(block_size=8, max_steps=6, eval_every=2, device="cpu"),
            quiet=True,
        )
    for name in ("best", "last"):  # whole, checksums and all
        assert load_checkpoint(tmp_path / "run" / name).step == 2
        assert not (tmp_path / "run" / f"{name}.tmp").exists()
