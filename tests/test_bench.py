"""The benchmark measures the right thing: correctness only, never speed.

Length-bucketed, padded batches give the same outputs as one sequence at a time; the
transformers twin the benchmark times holds our exact weights and does the same work (same
outputs, same loss and gradients); the FLOP and padding arithmetic is right; the quick run goes
end to end on a tiny checkpoint, returning positive numbers; the study's settings come from the
params tree; and `optiminbert bench` passes its options to benchmarks/encoder_speed.py.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks import bench
from optiminbert import settings
from optiminbert.batching import length_bucketed_batches, pad
from optiminbert.cli import main as cli_main
from optiminbert.model import BertConfig, BertModel, ours_to_hf

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64)
ATOL = 1e-4


def tiny_model(seed: int = 0, **overrides) -> BertModel:
    """A tiny random encoder with weights far from BERT's init (peaked attention, LayerNorm
    gains that matter), so a wrong mask or a mis-mapped weight shows well above tolerance."""
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**{**TINY, **overrides}))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.2 * noise if name.endswith("norm.weight") else 0.3 * noise)
    return model


def tiny_tree(checkpoint: Path, data: Path, **top) -> dict:
    """The params tree of a fast CPU benchmark: the embedded defaults, a tiny model and batches."""
    given = {"checkpoint": str(checkpoint), "data": str(data), "device": "cpu", "batch_size": 8, "eval_batch_size": 16,
             "max_length": 32, "prepare": {"cfimdb_max_length": 32}}
    return settings.overlay(settings.defaults(), {**given, **top})


def random_sequences(count: int, seed: int = 0) -> list[list[int]]:
    """[CLS] ... [SEP] sequences of skewed lengths 3..40, like real sentences (ids 5.. are words)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = (torch.distributions.Gamma(2.0, 0.15).sample((count,)) + 3).clamp(max=40).long()
    return [
        [2, *torch.randint(5, TINY["vocab_size"], (int(n) - 2,), generator=generator).tolist(), 3] for n in lengths
    ]


def with_segments(batch: dict) -> dict:
    return {**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}


def test_bucketed_batches_equal_one_sequence_at_a_time() -> None:
    model = tiny_model().eval()
    sequences = random_sequences(70)
    lengths = torch.tensor([len(s) for s in sequences])
    batches = length_bucketed_batches(lengths, 8, torch.Generator().manual_seed(1), chunk_batches=3)
    seen = []
    with torch.no_grad():
        for indices in batches:
            batch = with_segments(pad([sequences[i] for i in indices.tolist()]))
            assert (batch["attention_mask"] == 0).any() or len(set(lengths[indices].tolist())) == 1
            out = model(**batch)
            for row, i in enumerate(indices.tolist()):
                alone = model(torch.tensor([sequences[i]]))
                n = len(sequences[i])
                torch.testing.assert_close(out.last_hidden_state[row, :n], alone.last_hidden_state[0], atol=ATOL, rtol=0)
                torch.testing.assert_close(out.pooler_output[row], alone.pooler_output[0], atol=ATOL, rtol=0)
                seen.append(i)
    assert sorted(seen) == list(range(len(sequences)))


def test_twin_holds_our_weights_and_gives_our_outputs() -> None:
    ours = tiny_model(seed=2).eval()
    theirs = bench.hf_twin(ours).eval()
    hf_state = theirs.state_dict()
    for key, tensor in ours_to_hf(ours.state_dict(), ours.config).items():
        assert torch.equal(hf_state[key], tensor), key
    batches = bench.padded_batches(random_sequences(50, seed=3), 16, 3, seed=0)
    assert len(batches) == 3 and all(len(b["input_ids"]) == 16 for b in batches)
    with torch.no_grad():
        for batch in batches:
            a, b = ours(**batch), theirs(**batch)
            real = batch["attention_mask"].bool()
            torch.testing.assert_close(a.last_hidden_state[real], b.last_hidden_state[real], atol=ATOL, rtol=0)
            torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=ATOL, rtol=0)


@pytest.mark.parametrize("freeze_word_embeddings", [True, False])
def test_training_step_does_the_same_work_in_both_models(freeze_word_embeddings: bool) -> None:
    """Without dropout, one benchmark step gives the same loss and gradients in both models,
    and the frozen word table stays put in both."""
    ours = tiny_model(seed=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    theirs = bench.hf_twin(ours).train()
    words_before = ours.embeddings.word.weight.detach().clone()
    batch = bench.padded_batches(random_sequences(40, seed=5), 8, 1, seed=0)[0]
    device = torch.device("cpu")
    losses = [
        bench.training_step(model, bench.make_optimizer(model, 1e-3, freeze_word_embeddings), batch, device, None)
        for model in (ours, theirs)
    ]
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    ours_grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in ours.named_parameters()}
    hf_grads = {k: p.grad for k, p in theirs.named_parameters()}
    for key, grad in ours_to_hf(ours_grads, ours.config).items():
        if key == "embeddings.word_embeddings.weight" and freeze_word_embeddings:
            assert hf_grads[key] is None and not grad.any()
            continue
        torch.testing.assert_close(hf_grads[key], grad, atol=1e-5, rtol=1e-4, msg=key)
    moved = not torch.equal(ours.embeddings.word.weight, words_before)
    assert moved != freeze_word_embeddings
    assert not torch.equal(ours.layers[0].ffn_in.weight, tiny_model(seed=4).layers[0].ffn_in.weight)


def test_flop_formula_counts_the_layer_parameters() -> None:
    model = tiny_model()
    assert bench.layer_parameters(model.config) == sum(p.numel() for p in model.layers.parameters())
    lengths = torch.tensor([3, 5])
    n, layers, h = bench.layer_parameters(model.config), TINY["num_hidden_layers"], TINY["hidden_size"]
    forward = 2 * n * 8 + 4 * layers * h * (9 + 25)
    assert bench.encoder_flops(model.config, lengths, training=False) == forward
    assert bench.encoder_flops(model.config, lengths, training=True) == 3 * forward


def test_padding_fraction_arithmetic() -> None:
    # Rows of lengths 3 and 1 take 2 x 3 slots, 4 of them real; a batch of equal rows has none.
    assert bench.padding_fraction([torch.tensor([3, 1])]) == pytest.approx(1 / 3)
    assert bench.padding_fraction([torch.tensor([3, 1]), torch.tensor([2, 2])]) == pytest.approx(2 / 10)
    assert bench.padding_fraction([torch.tensor([4, 4, 4])]) == 0


def test_bucketing_pads_far_less_than_random_batches() -> None:
    single = [[len(s) * [7] for s in random_sequences(3000, seed=6)]]
    result = bench.task_padding(single, 32, 128, seed=0)["single"]
    assert result["bucketed"] < 0.10 < result["random"]

    a, b = random_sequences(2000, seed=7), random_sequences(2000, seed=8)
    pairs = bench.task_padding([a, b], 32, 48, seed=0)
    assert set(pairs) == {"cross", "siamese"} and set(pairs["cross"]) == {"random", "bucketed"}
    for layout in ("cross", "siamese"):
        assert pairs[layout]["bucketed"] < 0.10 < pairs[layout]["random"]


def test_side_by_side_pairs_pad_to_their_summed_lengths() -> None:
    # Pairs (5, 3) and (4, 4) side by side are rows of 8 and 8: no padding. Stacked as four rows
    # padded to 5, the same batch wasted 2 + 1 + 1 of 20 slots on the pairs' length gaps.
    a, b = [5 * [7], 4 * [7]], [3 * [7], 4 * [7]]
    assert bench.task_padding([a, b], 2, 48, seed=0)["siamese"]["bucketed"] == 0


def test_evaluation_batches_hold_every_dev_row_once(tiny_data: Path, tiny_checkpoint: Path) -> None:
    config = bench.BenchConfig(tiny_tree(tiny_checkpoint, tiny_data, eval_batch_size=4))
    _, (a, b) = bench.task_columns(tiny_data, "quora", str(tiny_checkpoint), 32, "dev")
    split = bench.dev_split(tiny_data, "quora", config)
    siamese = bench.evaluation_batches(split, "siamese", config)
    assert [len(x["input_ids"]) for x in siamese[:-1]] == [4] * (len(siamese) - 1)  # 4 pairs, side by side
    assert sorted(int(n) for x in siamese for n in x["attention_mask"].sum(1)) == sorted(len(s) + len(t) for s, t in zip(a, b))
    assert all("labels" not in x for x in siamese)
    cross = bench.evaluation_batches(split, "cross", config)
    assert sum(len(x["input_ids"]) for x in cross) == len(a) and all("token_type_ids" in x for x in cross)
    spread = bench.evaluation_batches(split, "siamese", dataclasses.replace(config, eval_batches=2))
    assert len(spread) == 2 and torch.equal(spread[0]["input_ids"], siamese[0]["input_ids"])


def test_quick_run_end_to_end(tiny_checkpoint: Path, tiny_data: Path, tiny_prepared: Path, tmp_path: Path, capsys) -> None:
    # batch_size 4 at the top level; the baseline's CFIMDB run and the SST specialist set their own.
    config = bench.BenchConfig.quick(
        tiny_tree(tiny_checkpoint, tiny_data, batch_size=4), fp32_too=True, matmul_size=128, train_reps=1, infer_reps=1,
        phase_steps=2, prepared=tiny_prepared,
    )
    results = bench.run(config, tmp_path / "results")
    labels = list(results["train"])
    assert labels[-1] == "fp32" and len(labels) in (1, 2)  # bf16 first where this CPU has it
    for kind in ("train", "infer"):
        for label in labels:
            r = results[kind][label]
            for key in ("ours_tokens_per_s", "hf_tokens_per_s", "ratio", "ours_flops_per_s"):
                assert r[key] > 0, (kind, label, key)
    assert results["matmul"]["fp32"] > 0 and results["matmul"]["bf16"] > 0
    for model in ("ours", "hf"):
        memory = results["memory"][model]
        assert memory["rss_peak_mib"] > 0 and memory["rss_peak_mib"] >= memory["rss_before_mib"] * 0.5
    assert set(results["padding"]) == {"sst", "cfimdb", "quora", "sts", "contrastive"}
    assert all(0 <= v < 1 for layouts in results["padding"].values() for r in layouts.values() for v in r.values())
    assert list(results["eval_sets"]) == [f"{task} {pairs}" for task, pairs in bench.EVAL_SETS]
    assert all(r["batches"] == 1 and r["ratio"] > 0 and 0 <= r["padding"] < 1 for r in results["eval_sets"].values())
    assert results["config"]["settings"]["batch_size"] == 4 and results["config"]["smoke"] is True

    # Every pipeline run that takes encoder steps went through the real training loop, with its own settings.
    assert list(results["phases"]) == [run.name for run in bench.PHASE_RUNS]
    assert {"mtl", "mtl_embed", "specialist-sts", "baseline-cfimdb-finetune"} <= set(results["phases"])
    assert "baseline-sst-pretrain" not in results["phases"]
    batch_sizes = {name: r["batch_size"] for name, r in results["phases"].items()}
    assert (batch_sizes["mtl"], batch_sizes["baseline-cfimdb-finetune"], batch_sizes["specialist-sst"]) == (4, 8, 16)
    # (the loop reports whole tenths of a second, so a tiny run's time may round to 0)
    assert all(r["steps"] == 2 and r["ms_per_step"] >= 0 and r["examples_per_second"] > 0 for r in results["phases"].values())

    written = (tmp_path / "results" / "encoder_speed-cpu-quick.txt").read_text()
    assert written == results["text"] and written in capsys.readouterr().out
    assert results["machine"]["torch"] in written and results["machine"]["cpu"] in written
    assert "ours/HF" in written and "Peak memory" in written and "method:" in written
    assert "Each phase's training loop" in written and "specialist-quora" in written
    assert "quora siamese" in written and "all of them" in written


def test_config_takes_the_study_settings_from_the_params_tree() -> None:
    tree = settings.overlay(settings.defaults(), {"batch_size": 7, "lr": 3e-4, "max_length": 64, "prepare": {"cfimdb_max_length": 99}})
    config = bench.BenchConfig(tree, {"device": "cpu", "checkpoint": "elsewhere"})
    s = config.settings
    assert (s.batch_size, s.lr, s.device, s.checkpoint, s.eval_batch_size) == (7, 3e-4, "cpu", "elsewhere", 128)
    assert config.max_length == {"sst": 64, "cfimdb": 99, "quora": 64, "sts": 64}
    record = config.record()
    assert record["settings"]["batch_size"] == 7 and "tree" not in record and record["train_reps"] == config.train_reps


def test_quick_and_full_configs_differ() -> None:
    full, quick = bench.BenchConfig(settings.defaults()), bench.BenchConfig.quick(settings.defaults(), note="n")
    assert full.smoke is False and quick.smoke is True and quick.note == "n"
    assert full.phase_steps > 0 == quick.phase_steps
    assert quick.train_reps < full.train_reps


def test_bench_command_passes_its_options_through(tmp_path: Path) -> None:
    from benchmarks import encoder_speed

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"batch_size": 7}))
    given = ["--quick", "--params", str(params), "--checkpoint", "ckpt", "--data", "raw", "--device", "cpu",
             "--compile", "--note", "a note"]
    args = encoder_speed.parser().parse_args(given)
    config = encoder_speed.config(args)
    assert config.smoke and config.compile and config.note == "a note" and args.results == bench.RESULTS
    s = config.settings
    assert (s.batch_size, s.checkpoint, s.data, s.device) == (7, "ckpt", "raw", "cpu")
    plain = encoder_speed.config(encoder_speed.parser().parse_args(["--params", str(params)]))
    assert not plain.smoke and not plain.compile and plain.overrides == {}


def test_bench_command_reports_a_bad_params_file_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    # `optiminbert bench` runs benchmarks/encoder_speed.py from the repository root.
    monkeypatch.chdir(ROOT)
    missing = tmp_path / "missing.yaml"
    monkeypatch.setattr(sys, "argv", ["optiminbert", "bench", "--params", str(missing)])
    with pytest.raises(SystemExit) as exited:
        cli_main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"error: {missing}: params file not found\n"
