"""train.group_by_length: training batches of similar token length. Every row once per epoch, less padding
than random batches, a new order each epoch drawn from the loader's generator, the same order on resume."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard

from helpers import like_demo, mod, run_cli
from test_resume import KILLED, crash

config, text, buckets = mod("core.config"), mod("modality.text"), mod("modality.buckets")
LENGTHS = np.random.default_rng(0).integers(3, 200, 1003).tolist()


def _epochs(sampler, n: int) -> list[list[list[int]]]:
    return [list(sampler) for _ in range(n)]


def _padding(batches, lengths) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_row_is_in_exactly_one_batch_per_epoch(drop_last):
    s = buckets.LengthGroupedBatchSampler(LENGTHS, 16, torch.Generator().manual_seed(0), drop_last)
    for batches in _epochs(s, 3):
        rows = [i for b in batches for i in b]
        assert len(batches) == len(s) == (1003 // 16 if drop_last else 1003 // 16 + 1)
        assert len(rows) == len(set(rows)) == (1003 - 1003 % 16 if drop_last else 1003)
        full = batches if drop_last else [b for b in batches if len(b) == 16]
        assert len(full) == 1003 // 16  # only the one incomplete batch is short


def test_batches_pad_far_less_than_random_batches_and_differ_across_epochs():
    gen = torch.Generator().manual_seed(0)
    s = buckets.LengthGroupedBatchSampler(LENGTHS, 16, gen, drop_last=True)
    one, two = _epochs(s, 2)
    plain = list(torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(LENGTHS, generator=gen), 16, True))
    assert _padding(one, LENGTHS) < 0.2 * _padding(plain, LENGTHS)
    assert one != two and sorted(map(sorted, one)) != sorted(map(sorted, two))
    # the batch order is shuffled, not longest first
    first = [max(LENGTHS[i] for i in b) for b in one]
    assert first != sorted(first, reverse=True)


def test_the_generator_alone_fixes_the_orders_so_a_restored_state_replays_them():
    gen = torch.Generator().manual_seed(5)
    s = buckets.LengthGroupedBatchSampler(LENGTHS, 16, gen, drop_last=True)
    first = list(s)
    state = gen.get_state()  # what a resume point saves after epoch 1
    second, third = list(s), list(s)
    torch.manual_seed(123)  # the global RNG plays no part
    gen.set_state(state)
    assert [list(s), list(s)] == [second, third]
    again = buckets.LengthGroupedBatchSampler(LENGTHS, 16, torch.Generator().manual_seed(5), drop_last=True)
    assert list(again) == first


def test_accelerate_shards_each_batch_between_processes_under_split_batches():
    s = buckets.LengthGroupedBatchSampler(LENGTHS, 16, torch.Generator().manual_seed(0), drop_last=True)
    state = s.generator.get_state()
    whole = list(s)
    shards = []
    for rank in range(2):
        s.generator.set_state(state)  # every process's generator is seeded alike
        shards.append(list(BatchSamplerShard(s, num_processes=2, process_index=rank, split_batches=True)))
    assert [a + b for a, b in zip(*shards)] == whole


def test_the_text_loader_groups_by_length_only_when_asked(demo_dir, workdir):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", "data.max_len=64"])
    df = pd.read_csv(demo_dir / "train.csv")
    targets = np.arange(len(df))  # the row numbers come back through the batches' targets

    def epoch(m):
        loader = m.loader(df, targets, True, 16, generator=torch.Generator().manual_seed(0))
        batches = list(loader)
        rows = np.concatenate([b["target"].numpy() for b in batches])
        pad = sum(int((b["attention_mask"] == 0).sum()) for b in batches)
        return rows, pad

    plain_rows, plain_pad = epoch(text.Modality(cfg))
    grouped = text.Modality(config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", "data.max_len=64",
                                                 "train.group_by_length=true"]))
    rows, pad = epoch(grouped)
    assert len(rows) == len(plain_rows) == len(df) - len(df) % 16 and len(set(rows)) == len(rows)
    assert pad < 0.5 * plain_pad, (pad, plain_pad)


@pytest.mark.slow
def test_a_killed_run_with_grouped_batches_resumes_to_the_uninterrupted_result(tiny, workdir):
    args = [*tiny, "train.group_by_length=true", "train.folds=[0]", "train.epochs=2", "data.max_len=64"]
    like_demo("ref", "cut")
    assert run_cli("train", "--exp", "ref", *args) == 0
    done = crash(workdir, "step", "2:3", "cut", args)  # step 3 of epoch 2: a resume point at epoch 1
    assert done.returncode == KILLED, done.stderr[-3000:]
    assert run_cli("train", "--exp", "cut", "--resume", *args) == 0
    ref, cut = workdir / "outputs" / "ref", workdir / "outputs" / "cut"
    assert (cut / "oof_preds.csv").read_bytes() == (ref / "oof_preds.csv").read_bytes()
    hist = [pd.read_csv(r / "history.csv", float_precision="round_trip").drop(columns="seconds") for r in (ref, cut)]
    pd.testing.assert_frame_equal(hist[1], hist[0], check_exact=True)
