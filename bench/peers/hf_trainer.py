"""The plain transformers Trainer fine-tune a competitor writes: all train rows, no folds, test -> CSV.
python bench/peers/hf_trainer.py --data DIR --out sub.csv --model MODEL_DIR [--max-len 128] [--epochs 2]"""
import argparse, numpy as np, pandas as pd, torch  # noqa: E401
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

p = argparse.ArgumentParser()
for k, v in dict(data="", out="", model="", max_len=128, epochs=2, batch=16, lr=2e-5, seed=42).items():
    p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
a = p.parse_args()
train, test = pd.read_csv(f"{a.data}/train.csv"), pd.read_csv(f"{a.data}/test.csv")
classes = sorted(train["label"].unique())
tok = AutoTokenizer.from_pretrained(a.model)
def encode(df, labels=None):  # noqa: E302 - a list of dicts is a Dataset to Trainer
    enc = tok(df["sentence"].tolist(), truncation=True, max_length=a.max_len)
    rows = [{k: enc[k][i] for k in enc} for i in range(len(df))]
    return [{**r, "labels": int(t)} for r, t in zip(rows, labels)] if labels is not None else rows
ds = encode(train, train["label"].map({c: i for i, c in enumerate(classes)}))
model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=len(classes))
args = TrainingArguments(output_dir="/tmp/hf_peer", num_train_epochs=a.epochs, per_device_train_batch_size=a.batch,
                         learning_rate=a.lr, warmup_steps=0.1, weight_decay=0.01, seed=a.seed, save_strategy="no",
                         report_to=[], logging_steps=50, use_cpu=not torch.cuda.is_available())
trainer = Trainer(model=model, args=args, train_dataset=ds, processing_class=tok)
trainer.train()
logits = trainer.predict(encode(test)).predictions
pd.DataFrame({"id": test["id"], "label": [classes[i] for i in np.argmax(logits, 1)]}).to_csv(a.out, index=False)
