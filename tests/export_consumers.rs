//! Exports load in the tools that train on them: the lesson and SFT files in Hugging Face
//! `datasets` (`load_dataset("json", …)`), the split SFT directory in mlx-lm's own loader (what
//! `mlx_lm.lora --data DIR` calls, with a chat-template tokenizer), DPO pairs and KTO rows in
//! TRL's columns (checked with `trl.data_utils`, which TRL's trainers use to read them; TRL is
//! installed without its torch dependency, so its trainers themselves are not run).
//!
//! The Python packages come from `scripts/test`; a missing one fails this test.

mod common;
mod store_fixture;

use common::OutputWithin;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CHECK: &str = r#"
import json, sys, types
from pathlib import Path

d = Path(sys.argv[1])

from datasets import load_dataset

for name in ("lesson.jsonl", "sft.jsonl"):
    ds = load_dataset("json", data_files=str(d / name), split="train")
    assert ds.column_names == ["messages"], (name, ds.column_names)
    assert len(ds) == 3, (name, len(ds))
    for row in ds:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"], roles
        assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"])
lesson = load_dataset("json", data_files=str(d / "lesson.jsonl"), split="train")
assert lesson[0]["messages"][0]["content"].startswith("KERNEL\n\n"), lesson[0]
print("datasets: lesson and sft ok")

# mlx-lm: the loader `mlx_lm.lora --data DIR` uses, with a tokenizer that has a chat template.
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from mlx_lm.tuner.datasets import CacheDataset, ChatDataset, load_dataset as mlx_load

words = {"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}
for f in ("train.jsonl", "valid.jsonl"):
    for line in open(d / "sft-split" / f):
        for m in json.loads(line)["messages"]:
            for w in (m["role"] + " " + m["content"]).split():
                words.setdefault(w, len(words))
tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>")
tokenizer.chat_template = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
args = types.SimpleNamespace(data=str(d / "sft-split"), train=True, test=False, mask_prompt=True)
train, valid, test = mlx_load(args, tokenizer)
assert isinstance(train, ChatDataset) and isinstance(valid, ChatDataset), (type(train), type(valid))
assert (len(train), len(valid), len(test)) == (2, 1, 0), (len(train), len(valid), len(test))
for part in (train, valid):
    cached = CacheDataset(part)
    for i in range(len(cached)):
        tokens, offset = cached[i]
        assert 0 < offset < len(tokens), (offset, len(tokens))
        assert 0 not in tokens, "every word is in the vocabulary"
print("mlx-lm: chat dataset ok")

# TRL: DPO's columns, and its own DPO -> KTO conversion against our KTO export.
from trl.data_utils import is_conversational, maybe_extract_prompt, unpair_preference_dataset

dpo = load_dataset("json", data_files=str(d / "dpo.jsonl"), split="train")
assert dpo.column_names == ["prompt", "chosen", "rejected"], dpo.column_names
for row in dpo:
    assert not is_conversational(row)
    assert maybe_extract_prompt(row)["prompt"] == row["prompt"]
    assert row["chosen"] != row["rejected"]
unpaired = unpair_preference_dataset(dpo)
assert sorted(unpaired.column_names) == ["completion", "label", "prompt"], unpaired.column_names

kto = load_dataset("json", data_files=str(d / "kto.jsonl"), split="train")
assert kto.column_names == ["prompt", "completion", "label"], kto.column_names
assert kto.features == unpaired.features, (kto.features, unpaired.features)
assert sorted(set(kto["label"])) == [False, True]
print("trl: dpo and kto columns ok")
"#;

fn export(store: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .arg("export")
        .args(args)
        .arg("--store")
        .arg(store)
        .env("LEM_TUI_LOG", store.with_extension("log"))
        .output_within(Duration::from_secs(600));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn exports_load_in_datasets_mlx_lm_and_trl() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_fixture::build(dir.path());
    let d = dir.path().join("exports");
    let p = |name: &str| d.join(name).to_string_lossy().into_owned();
    export(&db, &["lesson", "--out", &p("lesson.jsonl")]);
    export(&db, &["sft", "--out", &p("sft.jsonl")]);
    export(&db, &["sft", "--out", &p("sft-split"), "--valid", "0.34", "--split-seed", "3"]);
    export(&db, &["dpo", "--out", &p("dpo.jsonl")]);
    export(&db, &["kto", "--out", &p("kto.jsonl")]);
    let script = dir.path().join("check.py");
    std::fs::write(&script, CHECK).expect("script");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&d)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_CACHE", dir.path().join("hf-cache"))
        .output_within(Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the consumers rejected an export (or a package is missing: run scripts/test, which installs \
         datasets, mlx[cpu], mlx-lm and trl):\n{stdout}\n{stderr}"
    );
    for ok in ["datasets: lesson and sft ok", "mlx-lm: chat dataset ok", "trl: dpo and kto columns ok"] {
        assert!(stdout.contains(ok), "{stdout}\n{stderr}");
    }
}
