# Re-runs the first 250 steps of the bundled supervised run (same data order, seed and LR schedule as the
# original's first 400 steps: total_steps 10,000, warm-up 200) to keep early checkpoints as students.
import json, time
from alphazero_concepts.training.supervised import SupervisedConfig, train_supervised
cfg = SupervisedConfig(pgn=("../shared/data/human/masters_pgnmentor_sample.pgn",), seed=0, total_steps=10000,
                       checkpoint_every=50, state_every=50, chunk_games=1500)
t = time.time()
def prog(step, st):
    if step % 25 == 0:
        print(json.dumps({"step": step, **{k: round(v, 4) for k, v in st.items()}, "t": round(time.time() - t)}), flush=True)
train_supervised(cfg, "runs/teacher-early", max_steps=250, progress=prog)
print("DONE", flush=True)
