"""bench/gpu_check.py's results as a short text report: one line a measurement, errors and skips named."""

from __future__ import annotations

TARGET_RATIO = 0.97  # studio / TRL direct, as bench/overhead.py asks on a CPU
GOAL_GB = 16


def report(results: dict) -> str:
    sections = results.get("sections", {})
    lines = [heading(results, sections)]
    for name, section in sections.items():
        lines.append(
            f"\n[{name}] {section.get('wall_s', '?')} s"
            + (f", {section['ended']}" if "ended" in section else "")
        )
        lines += [f"  {line}" for line in section_lines(name, section)]
        if "ended" in section:
            lines += [f"  | {line}" for line in section.get("log_tail", [])[-8:]]
    lines += [f"\n[{name}] not run: {why}" for name, why in results.get("not_run", {}).items()]
    return "\n".join(lines) + "\n"


def heading(results: dict, sections: dict) -> str:
    device = next(
        (s["device"] for s in sections.values() if s.get("device", {}).get("cuda")), {"cuda": False}
    )
    packages = ", ".join(f"{name} {version}" for name, version in results["environment"]["packages"].items())
    where = (
        f"{device['name']}, {device['memory_gb']} GB, CUDA {device['torch_cuda']}, bf16 {device['bf16']}"
        if device["cuda"]
        else "no CUDA device"
    )
    plan = results["plan"]
    return (
        f"GPU check on {where}; total {results.get('total_s', '?')} s (setup {results.get('setup_s')} s)\n"
        f"python {results['environment']['python']}; {packages}\n"
        f"model: {plan['shape']} shape, random init; {plan['steps']} steps, up to {plan['rounds']} rounds, "
        f"batch {plan['batch']}, {plan['prompt_tokens']} + {plan['reply_tokens']} tokens, "
        f"max_length {plan['max_length']}"
    )


def section_lines(name: str, section: dict) -> list[str]:
    describe = {
        "stages": stage_line,
        "qlora": qlora_line,
        "big": qlora_line,
        "runner": job_line,
        "chat": chat_line,
    }[name]
    lines = [f"estimate: {section['estimate_gb']}"] if "estimate_gb" in section else []
    for row in section.get("rows", []):
        if "error" in row:
            lines.append(f"{row['name']}: ERROR {row['error']}")
        elif "skipped" in row:
            lines.append(f"{row['name']}: skipped ({row['skipped']})")
        else:
            lines.append(f"{row['name']}: {describe(row)}")
    if "goal_16gb_met" in section:
        lines += [f"goal <= {GOAL_GB} GB met: {met} ({run})" for run, met in section["goal_16gb_met"].items()]
    return lines


def speed(run: dict) -> str:
    return f"{run['samples_per_s']:.2f} samples/s ({run['tokens_per_s']:,} tokens/s)"


def memory(run: dict) -> str:
    if run.get("peak_allocated_gb") is None:
        return "no GPU memory figures (no CUDA)"
    return (
        f"peak {run['peak_allocated_gb']} GB allocated / {run['peak_reserved_gb']} GB reserved, "
        f"whole GPU {run['device_peak_gb']} GB"
    )


def stage_line(row: dict) -> str:
    if "stage" not in row:  # the warm-up
        return f"{speed(row)}, {memory(row)}"
    parts = []
    for name, label in (("studio", "studio"), ("trl", "TRL direct")):
        if name not in row:
            continue
        run = row[name]
        text = (
            f"{label} {speed(run)} over {len(run['runs'])} runs" if "samples_per_s" in run else f"{label} -"
        )
        if run["errors"]:
            text += f" ({len(run['errors'])} FAILED: {run['errors'][0][:200]})"
        parts.append(text)
    if "ratio" in row:
        verdict = "ok" if row["ratio"] >= TARGET_RATIO else f"BELOW {TARGET_RATIO}"
        parts.append(f"ratio {row['ratio']:.3f} {verdict} (TRL side: {row['direct']})")
    elif row["direct"].startswith("none"):
        parts.append(row["direct"])
    studio = row.get("studio", {})
    if "samples_per_s" in studio:
        parts.append(memory(studio))
        if studio["allocated_before_gb"]:
            parts.append(f"{studio['allocated_before_gb']} GB still allocated before a run")
    return " | ".join(parts)


def qlora_line(row: dict) -> str:
    if "measured_gb" in row:
        return f"measured {row['measured_gb']} GB, estimate {row['estimate_gb']} GB (ratio {row['ratio']})"
    if "samples_per_s" in row:
        return f"{speed(row)}, {memory(row)}"
    return ", ".join(f"{key} {value}" for key, value in row.items() if key != "name")


def job_line(row: dict) -> str:
    text = (
        f"{row['state']} ({'as expected' if row['as_expected'] else 'NOT AS EXPECTED'}) in {row['job_s']} s"
    )
    if row["state"] != "completed":
        text += f": {row['message'][:120]}"
    if "peak_above_baseline_gb" in row:
        released = row["released_after_s"]
        text += (
            f" | GPU +{row['peak_above_baseline_gb']} GB while it ran"
            + ("" if row["trained_on_gpu"] else " (NOT ON THE GPU)")
            + (
                f", back to the baseline {released} s after"
                if released is not None
                else f", NOT RELEASED: +{row['after_above_baseline_gb']} GB"
            )
        )
    return text


def chat_line(row: dict) -> str:
    if "median_ms" in row:
        bare = row["median_ms"]["bare generate"]
        ratios = ", ".join(f"{name} x{ratio}" for name, ratio in row["ratio_to_bare"].items())
        return f"bare generate {bare} ms; {ratios}"
    return ", ".join(f"{key} {value}" for key, value in row.items() if key != "name")
