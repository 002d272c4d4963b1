"""Self-speculative decoding against plain greedy decoding on the same prompts: acceptance rate,
tokens per forward pass and wall-clock speed-up (models/speculative.py vs models/sampling.generate),
shared by experiments/mtp_byte_lm.py and experiments/mtp_induction.py."""

import time


def interleaved_medians(fns, reps):
    """Compile each fn, then time them in turn `reps` times (so load drifts hit both alike)."""
    import jax
    import numpy as np

    outs = [jax.block_until_ready(fn()) for fn in fns]
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - start)
    return outs, [float(np.median(ts)) for ts in times], times


def degeneracy(tokens) -> dict:
    """How repetitive a greedy continuation is: distinct tokens and the most frequent one's share."""
    import numpy as np

    counts = np.bincount(np.asarray(tokens).ravel())
    return {
        "distinct_tokens": int((counts > 0).sum()),
        "top_token_share": float(counts.max() / max(counts.sum(), 1)),
    }


def compare_decoders(model, variables, prompts, *, new_tokens: int, reps: int, detokenize=None) -> dict:
    """prompts: 1-D int32 arrays, each decoded at batch 1 by both decoders. Returns the totals over
    prompts (acceptance = accepted drafts / (passes x (n-1)); tokens/pass counts the prefill as one
    pass; speed-up = summed greedy medians / summed speculative medians) and per-prompt rows.
    detokenize: tokens -> str for the rows (default: the token list)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxformers.models.sampling import generate
    from jaxformers.models.speculative import speculative_generate

    n = model.cfg.mtp.num_future_tokens
    detokenize = detokenize or (lambda tokens: [int(t) for t in tokens])
    rows = []
    for prompt in prompts:
        prompt = jnp.asarray(prompt[None])
        (greedy, (spec, stats)), (t_greedy, t_spec), _ = interleaved_medians(
            [
                lambda prompt=prompt: generate(model, variables, prompt, jax.random.PRNGKey(0),
                                 max_new_tokens=new_tokens, temperature=0.0),
                lambda prompt=prompt: speculative_generate(model, variables, prompt,
                                                           max_new_tokens=new_tokens),
            ],
            reps,
        )  # fmt: skip
        continuation = np.asarray(greedy)[0, prompt.shape[1] :]
        # Teacher-forced check of the acceptance rate: how often head i's argmax at a position of
        # the greedy text is the greedy token i steps later (what a draft must match to be kept).
        guesses = np.asarray(jnp.argmax(model.apply(variables, greedy, heads="all"), -1))[:, 0]
        agreement = {
            f"head{i}_agreement": float(np.mean(
                guesses[i - 1, prompt.shape[1] - 1 : -i] == np.asarray(greedy)[0, prompt.shape[1] - 1 + i :]
            ))
            for i in range(2, n + 1)
        }  # fmt: skip
        rows.append({
            "identical_to_greedy": bool(np.array_equal(np.asarray(greedy), np.asarray(spec))),
            "forward_passes": int(stats["forward_passes"]),
            "accepted_drafts": int(stats["accepted_drafts"]),
            "greedy_s": t_greedy, "speculative_s": t_spec,
            **degeneracy(continuation),
            **agreement,
            "prompt": detokenize(np.asarray(prompt)[0]),
            "continuation": detokenize(continuation),
        })  # fmt: skip
    passes = sum(r["forward_passes"] for r in rows)
    accepted = sum(r["accepted_drafts"] for r in rows)
    t_greedy, t_spec = sum(r["greedy_s"] for r in rows), sum(r["speculative_s"] for r in rows)
    total_new = new_tokens * len(rows)
    return {
        "identical_to_greedy": all(r["identical_to_greedy"] for r in rows),
        "prompts": len(rows), "reps": reps,
        "forward_passes": passes, "accepted_drafts": accepted,
        "acceptance_rate": accepted / max(passes * (n - 1), 1),
        "tokens_per_pass": total_new / (passes + len(rows)),  # the prefill is one pass per prompt
        "greedy_tokens_per_s": total_new / t_greedy,
        "speculative_tokens_per_s": total_new / t_spec,
        "speed_up": t_greedy / t_spec,
        "mean_distinct_tokens": float(np.mean([r["distinct_tokens"] for r in rows])),
        "mean_top_token_share": float(np.mean([r["top_token_share"] for r in rows])),
        **{k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.endswith("_agreement")},
        "per_prompt": rows,
    }  # fmt: skip
