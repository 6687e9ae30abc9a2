"""The plain timm loop a competitor writes: all train rows, no folds, no augmentation, AdamW + cosine, test -> CSV.
python bench/peers/timm_loop.py --data DIR --out sub.csv [--model resnet18] [--size 32] [--epochs 5] [--weights FILE]"""
import argparse, cv2, numpy as np, pandas as pd, timm, torch  # noqa: E401

p = argparse.ArgumentParser()
for k, v in dict(data="", out="", model="resnet18", size=32, epochs=5, batch=64, lr=1e-3, weights="", seed=42).items():
    p.add_argument(f"--{k}", type=type(v), default=v)
a = p.parse_args()
torch.manual_seed(a.seed)
train, test = pd.read_csv(f"{a.data}/train.csv"), pd.read_csv(f"{a.data}/test.csv")
classes = sorted(train["label"].unique())
mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
def load(df):  # noqa: E302
    imgs = [cv2.resize(cv2.imread(f"{a.data}/{f}")[:, :, ::-1], (a.size, a.size)) for f in df["image"]]
    return torch.tensor(((np.stack(imgs) / 255.0 - mean) / std).transpose(0, 3, 1, 2), dtype=torch.float32)
X, Xt = load(train), load(test)
y = torch.tensor(train["label"].map({c: i for i, c in enumerate(classes)}).to_numpy())
extra = dict(pretrained=True, pretrained_cfg_overlay=dict(file=a.weights)) if a.weights else {}
model = timm.create_model(a.model, num_classes=len(classes), **extra)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
steps = a.epochs * (len(X) // a.batch)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.1)
for epoch in range(a.epochs):
    model.train()
    perm = torch.randperm(len(X))
    for i in range(len(X) // a.batch):
        idx = perm[i * a.batch:(i + 1) * a.batch]
        loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()  # noqa: E702
    print(f"epoch {epoch + 1} loss {loss.item():.4f}", flush=True)
model.eval()
with torch.no_grad():
    pred = torch.cat([model(Xt[i:i + 256]).argmax(1) for i in range(0, len(Xt), 256)])
pd.DataFrame({"id": test["id"], "label": [classes[i] for i in pred]}).to_csv(a.out, index=False)
