"""The figures of ``bench/turn_taking.py`` from its runs' results, the tables it prints (with the
targets next to them) and the one-line description of a run that ``-v`` prints."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from common import median, percentile, table
from turn_taking_cost import Cost
from turn_taking_probe import SERVER_VAD, TURN_MODES, snr_label
from turn_taking_runs import BargeResult, TurnResult

TARGET_ENDPOINT_EXTRA_MS = 40
TARGET_PREMATURE = 0.02
TARGET_FALSE_BARGE_IN = 0.02
NON_SPEECH_KINDS = ("cough", "click", "burst", "thump")

Figures = dict[str, Any]


def rate(count: int, n: int) -> str:
    return f"{100 * count / n:.1f} % ({count}/{n})" if n else "-"


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


# -------------------------------------------------------------------------------------- figures


def turn_figures(results: Sequence[TurnResult]) -> Figures:
    n = len(results)
    detected = [r for r in results if r.starts]
    premature = [r for r in results if r.premature]
    settled = [r for r in results if not r.premature and r.ended]
    delays = [r.stops[-1][0] - r.end_ms for r in settled]
    every_silence = [d for r in results for d in r.stop_delays()]
    end_errors = [r.stops[-1][1] - r.end_ms for r in settled]
    firsts = [r for r in detected if r.starts[0][0] >= r.onset_ms]
    onset_errors = [r.starts[0][1] + r.prefix_ms - r.onset_ms for r in firsts]
    start_delays = [r.starts[0][0] - r.onset_ms for r in firsts]
    return {
        "n": n,
        "no_turn": n - len(detected),
        "started_before_onset": len(detected) - len(firsts),
        "premature": len(premature),
        "premature_in_pause": sum(r.premature_in_pause for r in premature),
        "premature_rate": len(premature) / n if n else math.nan,
        "premature_paused": sum(r.kind == "paused" for r in premature),
        "premature_whole": sum(r.kind == "whole" for r in premature),
        "not_ended": sum(not r.premature and not r.ended for r in results),
        "endpoint_n": len(settled),
        "endpoint_delay_ms_p50": median(delays),
        "endpoint_delay_ms_p95": percentile(delays, 95),
        "endpoint_delay_ms_max": max(delays) if delays else math.nan,
        "silence_stops_n": len(every_silence),
        "silence_stops_of": sum(len(r.pauses) + 1 for r in results),
        "silence_stop_delay_ms_p50": median(every_silence),
        "silence_stop_delay_ms_p95": percentile(every_silence, 95),
        "audio_end_abs_error_ms_p50": median([abs(e) for e in end_errors]),
        "audio_end_abs_error_ms_p95": percentile([abs(e) for e in end_errors], 95),
        "audio_end_error_ms_p50": median(end_errors),
        "onset_abs_error_ms_p50": median([abs(e) for e in onset_errors]),
        "onset_abs_error_ms_p95": percentile([abs(e) for e in onset_errors], 95),
        "onset_error_ms_p50": median(onset_errors),
        "start_delay_ms_p50": median(start_delays),
        "start_delay_ms_p95": percentile(start_delays, 95),
        "segments_p50": median([len(r.starts) for r in results]),
    }


def barge_figures(results: Sequence[BargeResult]) -> Figures:
    valid = [r for r in results if r.valid]
    groups: dict[str, list[BargeResult]] = {
        kind: [r for r in valid if r.kind == kind] for kind in NON_SPEECH_KINDS
    }
    groups["non-speech sounds"] = [r for r in valid if r.kind in NON_SPEECH_KINDS]
    groups["backchannels"] = [r for r in valid if r.kind == "backchannel"]
    groups["all non-speech + backchannels"] = [r for r in valid if r.kind != "barge_in"]
    false: dict[str, Any] = {}
    for label, group in groups.items():
        pauses = [r.held_ms for r in group if r.held and not r.false_trigger]
        false[label] = {
            "n": len(group),
            "cancelled": sum(r.barged_in for r in group),
            "speech_started": sum(bool(r.started) for r in group),
            "false_barge_in": sum(r.false_trigger for r in group),
            "false_barge_in_rate": sum(r.false_trigger for r in group) / len(group) if group else math.nan,
            "paused": len(pauses),
            "pause_ms_p50": median(pauses),
            "pause_ms_p95": percentile(pauses, 95),
        }
    real = [r for r in valid if r.kind == "barge_in"]
    hits = [r for r in real if r.cancelled_at is not None]
    delays = [r.cancelled_at - r.onset_ms for r in hits if r.cancelled_at is not None]
    quiet = [q - r.onset_ms for r in real if (q := r.quiet_at) is not None]
    return {
        "invalid": len(results) - len(valid),
        "false": false,
        "real": {
            "n": len(real),
            "missed": len(real) - len(hits),
            "missed_names": [f"{r.name} ({r.text})" for r in real if r.cancelled_at is None],
            "cancelled_before_onset": sum(d < 0 for d in delays),
            "delay_ms_p50": median(delays),
            "delay_ms_p95": percentile(delays, 95),
            "delay_ms_min": min(delays) if delays else math.nan,
            "delay_ms_max": max(delays) if delays else math.nan,
            "quiet_ms_p50": median(quiet),
            "quiet_ms_p95": percentile(quiet, 95),
            "other_end": sorted({r.other_end for r in real if r.other_end}),
        },
    }


def figures_by_condition(
    results: Sequence[TurnResult | BargeResult], snrs: Sequence[float | None]
) -> tuple[dict[tuple[str, str], Figures], dict[str, Figures]]:
    """End-of-turn figures by (mode, SNR label) and barge-in figures by SNR label, for the conditions
    that have results."""
    turn_results = [r for r in results if isinstance(r, TurnResult)]
    barge_results = [r for r in results if isinstance(r, BargeResult)]
    turn_figs: dict[tuple[str, str], Figures] = {}
    for mode in TURN_MODES:
        for snr in snrs:
            group = sorted((r for r in turn_results if r.mode == mode and r.snr == snr), key=lambda r: r.name)
            if group:
                turn_figs[(mode, snr_label(snr))] = turn_figures(group)
    barge_figs: dict[str, Figures] = {}
    for snr in snrs:
        barges = sorted((r for r in barge_results if r.snr == snr), key=lambda r: r.name)
        if barges:
            barge_figs[snr_label(snr)] = barge_figures(barges)
    return turn_figs, barge_figs


# -------------------------------------------------------------------------------------- tables

ENDPOINT_HEADER = ["premature", "in a pause", "target", "delay n", "p50", "p95", "max", "target p50"]
TIMESTAMP_COLUMNS = (
    ("audio_end |err| p50", "audio_end_abs_error_ms_p50"),
    ("p95", "audio_end_abs_error_ms_p95"),
    ("bias p50", "audio_end_error_ms_p50"),
    ("start+prefix |err| p50", "onset_abs_error_ms_p50"),
    ("p95", "onset_abs_error_ms_p95"),
    ("bias p50", "onset_error_ms_p50"),
    ("started after onset p50", "start_delay_ms_p50"),
    ("p95", "start_delay_ms_p95"),
)


def endpoint_cells(mode: str, f: Figures) -> list[str]:
    server_vad = mode == "server_vad"
    return [
        str(f["n"]),
        rate(f["premature"], f["n"]),
        str(f["premature_in_pause"]),
        "-" if server_vad else f"<= {TARGET_PREMATURE:.0%}",
        str(f["endpoint_n"]),
        fmt(f["endpoint_delay_ms_p50"]),
        fmt(f["endpoint_delay_ms_p95"]),
        fmt(f["endpoint_delay_ms_max"]),
        f"<= {SERVER_VAD['silence_duration_ms'] + TARGET_ENDPOINT_EXTRA_MS}" if server_vad else "-",
        str(f["not_ended"]),
        str(f["no_turn"]),
    ]


def timestamp_cells(mode: str, f: Figures) -> list[str]:
    return [*(fmt(f[key]) for _, key in TIMESTAMP_COLUMNS), str(f["started_before_onset"])]


def print_turns(figures: dict[tuple[str, str], Figures], snrs: Sequence[float | None]) -> None:
    modes = [m for m in TURN_MODES if any((m, snr_label(s)) in figures for s in snrs)]
    if not modes:
        return

    def rows(cells: Callable[[str, Figures], list[str]]) -> list[list[str]]:
        """A row per SNR and mode with figures: both, then ``cells(mode, figures)``."""
        return [
            [snr_label(snr), mode, *cells(mode, f)]
            for snr in snrs
            for mode in modes
            if (f := figures.get((mode, snr_label(snr)))) is not None
        ]

    print()
    print("-- end of turn: premature ends and endpoint delay (input-position ms) --")
    header = ["SNR", "mode", "n", *ENDPOINT_HEADER, "never ended", "no turn"]
    print(table([header, *rows(endpoint_cells)], align_right_from=2))
    if "server_vad" in modes:
        print()
        print(
            "-- server_vad: every silence after speech (inner pauses of 600-1500 ms and the end);"
            " delay = first speech_stopped in it - its start --"
        )
        target = f"<= {SERVER_VAD['silence_duration_ms'] + TARGET_ENDPOINT_EXTRA_MS}"
        cells = [
            ["SNR", "silences", "with a stop", "delay p50", "p95", "target p50"],
            *(
                [
                    snr_label(snr),
                    str(f["silence_stops_of"]),
                    str(f["silence_stops_n"]),
                    fmt(f["silence_stop_delay_ms_p50"]),
                    fmt(f["silence_stop_delay_ms_p95"]),
                    target,
                ]
                for snr in snrs
                if (f := figures.get(("server_vad", snr_label(snr)))) is not None
            ),
        ]
        print(table(cells, align_right_from=1))
    print()
    print("-- end of turn: timestamps (ms; error = reported - true, |abs| medians and p95) --")
    header = ["SNR", "mode", *(label for label, _ in TIMESTAMP_COLUMNS), "started early"]
    print(table([header, *rows(timestamp_cells)], align_right_from=2))


def print_barge(figures: dict[str, Figures], snrs: Sequence[float | None]) -> None:
    if not figures:
        return
    present = [(snr_label(snr), figures[snr_label(snr)]) for snr in snrs if snr_label(snr) in figures]
    print()
    print("-- barge-in, server_vad defaults, during a response that is speaking: false barge-ins --")
    header = ["SNR", "stimuli", "n", "cancelled", "speech_started", "false barge-in", "target"]
    rows = [[*header, "paused", "pause p50", "p95"]]
    for label, f in present:
        for group, g in f["false"].items():
            target = f"<= {TARGET_FALSE_BARGE_IN:.0%}" if group == "all non-speech + backchannels" else ""
            rows.append(
                [
                    label,
                    group,
                    str(g["n"]),
                    str(g["cancelled"]),
                    str(g["speech_started"]),
                    rate(g["false_barge_in"], g["n"]),
                    target,
                    str(g["paused"]),
                    fmt(g["pause_ms_p50"]),
                    fmt(g["pause_ms_p95"]),
                ]
            )
    print(table(rows, align_right_from=2))
    print(
        "paused: not cancelled, but voice was judged a candidate, over which server-played audio (WebRTC, "
        "SIP, Twilio) pauses, then resumes; pause: how long (ms of input)"
    )
    print()
    print("-- barge-in: real interruptions (>= 0.5 s of speech); delay = cancelled response.done - onset --")
    rows = [
        [
            "SNR",
            "n",
            "missed",
            "target",
            "delay p50",
            "p95",
            "min",
            "max",
            "before onset",
            "invalid runs",
            "quiet p50",
            "p95",
        ]
    ]
    for label, f in present:
        real = f["real"]
        rows.append(
            [
                label,
                str(real["n"]),
                rate(real["missed"], real["n"]),
                "0",
                *(fmt(real[f"delay_ms_{which}"]) for which in ("p50", "p95", "min", "max")),
                str(real["cancelled_before_onset"]),
                str(f["invalid"]),
                fmt(real["quiet_ms_p50"]),
                fmt(real["quiet_ms_p95"]),
            ]
        )
    print(table(rows, align_right_from=1))
    print(
        "quiet: from the onset until server-played audio pauses (the voice became a candidate) or stops "
        "(the barge-in, when it came first)"
    )
    for label, f in present:
        if f["real"]["missed_names"]:
            print(f"missed at {label}: {', '.join(f['real']['missed_names'])}")
        if f["real"]["other_end"]:
            print(f"first response ended otherwise at {label}: {', '.join(f['real']['other_end'])}")


def print_costs(costs: Sequence[Cost]) -> None:
    if not costs:
        return
    print()
    print("-- cost of listening: CPU per second of input audio (as fast as possible; process CPU time) --")
    rows = [["path", "audio s", "CPU ms per audio s", "real-time sessions per core", "note"]]
    for c in costs:
        rows.append([c.label, f"{c.audio_s:.0f}", f"{c.ms_per_s:.1f}", f"{c.sessions_per_core:.0f}", c.note])
    print(table(rows, align_right_from=1))
    print(
        "Silero and pocketsphinx hold the GIL while they compute, so one process gets at most one core's "
        "worth of them: sessions per core is also the most one server process keeps up with."
    )


def describe(result: TurnResult | BargeResult) -> str:
    heard = f" | heard {' / '.join(repr(t) for t in result.transcripts) or '-'}"
    if isinstance(result, TurnResult):
        starts = ", ".join(f"@{a:.0f}(start {s})" for a, s in result.starts)
        stops = ", ".join(f"@{a:.0f}(end {e})" for a, e in result.stops)
        flag = " PREMATURE" if result.premature else ""
        return (
            f"{result.mode:16s} {snr_label(result.snr):6s} {result.name:14s} true {result.onset_ms:.0f}-"
            f"{result.end_ms:.0f}{flag} | started {starts or '-'} | stopped {stops or '-'}{heard}"
        )
    end = f"cancelled @{result.cancelled_at:.0f}" if result.cancelled_at is not None else "not cancelled"
    started = ", ".join(f"@{a:.0f}" for a in result.started) or "-"
    return (
        f"barge_in         {snr_label(result.snr):6s} {result.name:20s} true {result.onset_ms:.0f}-"
        f"{result.end_ms:.0f} {result.text!r} | {end} | speech_started {started}{heard}"
        + ("" if result.warm_up_transcript is None else f" (warm-up heard {result.warm_up_transcript!r})")
        + ("" if result.valid else " | INVALID (response not speaking)")
    )
