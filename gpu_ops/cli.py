"""`llm-energy-measure` command line. User errors: one clear line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from gpu_ops import __version__
from gpu_ops.errors import MeasurementError, UserError, excerpt


def _cmd_run(args) -> int:
    """Measure; stdout gets only the result folder's path (or, with --json, only the summary): progress, checks and
    the table go to stderr, so `$(llm-energy-measure run ...)` captures just that."""
    from gpu_ops.config import load_config_with
    from gpu_ops.runner import run_experiment
    from gpu_ops.summary import check_lines, run_summary, summary_table
    from gpu_ops.validation import blocking_failures, validate

    settings = list(args.set or []) + ([f"backend={args.backend}"] if args.backend else [])
    cfg, file_sha = load_config_with(args.config, settings)
    if args.dry_run:
        return _dry_run(cfg, args)
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    if args.server:
        from gpu_ops.serve import run_on_server

        if args.show_tokens:
            raise UserError("--show-tokens prints from inside the engine: run without --server to use it")
        outcome = run_on_server(Path(args.server), cfg, Path(args.out), progress=say, file_sha=file_sha)
    else:
        outcome = run_experiment(
            cfg,
            Path(args.out),
            progress=say,
            show_bar=not args.quiet and not args.verbose and not args.show_tokens,
            show_tokens=args.show_tokens,
            file_sha=file_sha,
        )
    findings = validate(outcome.tables)
    summary = run_summary(outcome.tables, outcome.folder, findings, file_sha)
    if not args.quiet:
        print("\n".join([*check_lines(summary), summary_table(summary)]), file=sys.stderr)
    print(json.dumps(summary, allow_nan=False) if args.json else outcome.folder)
    failed = blocking_failures(findings)
    if failed:  # the folder stays for inspection; the platform would refuse it
        print(f"error: blocking checks failed: {', '.join(f.check for f in failed)}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_serve(args) -> int:
    from gpu_ops.serve import serve

    logging.getLogger("gpu_ops").setLevel(logging.INFO)
    return serve(Path(args.socket), Path(args.cache_dir) if args.cache_dir else None, args.exit_with_parent)


def _estimates(cfg, args):
    """The estimate of every sweep point on each hardware asked for, and the history folders left out."""
    from gpu_ops.environment import validate_slug
    from gpu_ops.estimate import estimate, hardware_of, read_history

    history, skipped = read_history([Path(h) for h in args.history])
    hardware = [validate_slug(h, "--hardware") for h in args.hardware] or hardware_of(cfg)
    return [e for hw in hardware for e in estimate(cfg, hw, history)], skipped


def _dry_run(cfg, args) -> int:
    """What `run` would do, and at what cost; nothing is measured or written."""
    from gpu_ops.estimate import render

    points = cfg.expand()
    print(f"{cfg.name}: {cfg.model} on {cfg.backend}, {len(points)} sweep point(s), {cfg.cycles} cycles each")
    for p in points:
        pc = p.config
        print(
            f"  {p.label:<28} {pc.prompts.count} requests x {pc.cycles} cycles + {pc.warmup_count()} warm-up = "
            f"{pc.prompts.count * pc.cycles + pc.warmup_count()} requests"
            + (f"  {excerpt(p.overrides)}" if p.overrides else "")
        )
    print(f"requests in all: {sum(p.config.prompts.count * p.config.cycles + p.config.warmup_count() for p in points)}")
    try:
        estimates, skipped = _estimates(cfg, args)
    except UserError as exc:  # the sweep above stands without an estimate (e.g. a hub model not downloaded yet)
        print(f"estimate: none ({exc})")
        estimates, skipped = [], []
    if estimates:
        print(render(estimates))
    if skipped:
        print(f"history: {len(skipped)} folder(s) left out: " + "; ".join(skipped[:3]), file=sys.stderr)
    print("dry run: nothing measured, nothing written", file=sys.stderr)
    return 0


def _cmd_estimate(args) -> int:
    from gpu_ops.config import load_config
    from gpu_ops.estimate import as_json, render

    estimates, skipped = _estimates(load_config(args.config), args)
    if args.json:
        print(as_json(estimates, skipped))
        return 0
    print(render(estimates))
    if skipped:
        print(f"history: {len(skipped)} folder(s) left out: " + "; ".join(skipped[:3]), file=sys.stderr)
    return 0


def _add_estimate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hardware",
        action="append",
        default=[],
        help="hardware profile to estimate for (repeatable; default: the config's `hardware:`, else this machine's)",
    )
    p.add_argument(
        "--history",
        action="append",
        default=[],
        help="folder of past result folders (repeatable; e.g. a platform's storage/assets/raw_measurements)",
    )


def _cmd_show_config(args) -> int:
    from gpu_ops.config import load_config

    cfg = load_config(args.config)
    data = cfg.model_dump(mode="json") if args.all else cfg.non_defaults()
    print(yaml.safe_dump(data, sort_keys=False).rstrip())
    points = cfg.expand()
    if len(points) > 1:
        print(f"# {len(points)} sweep points: " + "; ".join(p.label for p in points))
    return 0


def _cmd_list_models(args) -> int:
    from gpu_ops.models import list_models

    for name, desc in list_models():
        print(f"{name:<28} {desc}")
    return 0


def _cmd_list_presets(args) -> int:
    from dataclasses import asdict

    from gpu_ops.decoding import PRESETS

    for name, s in PRESETS.items():
        print(f"{name:<14} " + " ".join(f"{k}={v}" for k, v in asdict(s).items()))
    return 0


def _cmd_list_backends(args) -> int:
    from gpu_ops.backends import BACKENDS, get_backend
    from gpu_ops.backends.matrix import declared

    for name in BACKENDS:
        verified = declared()[name].verified
        mark = f"  verified: {verified}" if verified else "  [not verified on hardware]"
        try:
            b = get_backend(name)
            caps = b.capabilities()
            print(
                f"{name:<10} available    {b.version()}  precisions={','.join(sorted(caps.precisions))} "
                f"lora={caps.lora}{mark}"
            )
            b.close()
        except UserError as exc:
            print(f"{name:<10} unavailable  {exc}{mark}")
    return 0


def _cmd_report(args) -> int:
    from gpu_ops.conversions import NO_CONVERSIONS, load_conversions
    from gpu_ops.results import result_folders_in
    from gpu_ops.site import report_from_folders
    from gpu_ops.site.answers import slo_state
    from gpu_ops.slo import parse_slo, render_pick, slo_pick

    slo = parse_slo(args.slo) if args.slo is not None else ()  # refused before anything is read or written
    if args.conversions and not Path(args.conversions).is_file():
        raise UserError(f"--conversions: {args.conversions} is not a file; give the conversions YAML (docs/metrics.md)")
    conversions = load_conversions(Path(args.conversions)) if args.conversions else NO_CONVERSIONS
    folders = [inner for f in args.results for inner in (result_folders_in(Path(f)) or [Path(f)])]  # results/ too
    site = report_from_folders(folders, Path(args.out), args.dagster_url, slo, conversions, args.site_url)
    for warning in site.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{site.rows} leaderboard rows, {site.pages} detail pages: {site.folder / 'index.html'}")
    if slo:
        print(render_pick(slo_pick(site.board, slo), slo))
        print(f"{site.folder / 'slo.html'}#{slo_state(slo)}")
    return 0


def _cmd_compare(args) -> int:
    from gpu_ops.compare import check_failures, compare, render_table, write_outputs

    say = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    out = Path(args.out)
    table = compare(args.config, [b.strip() for b in args.backends.split(",") if b.strip()], out, say)
    print(render_table(table))
    print(f"request trace {table.trace_hash.iloc[0]} replayed on every backend")
    for path in write_outputs(table, out):
        print(path)
    failed = check_failures(table)
    if failed:  # as `run`: the folders and the table stay for inspection; the platform would refuse these results
        named = "; ".join(f"{backend}: {checks}" for backend, checks in failed.items())
        print(f"error: blocking checks failed: {named}", file=sys.stderr)
    return 1 if failed else 0


def _print_profiles() -> None:
    from gpu_ops.hardware import standard_profiles

    print(
        f"{'profile':<16} {'title':<16} {'TDP W':>6} {'mem GB':>7} {'GB/s':>6} {'bf16 TF/s':>9} {'$/h':>6}  gpu names"
    )
    for s in standard_profiles().values():
        mem = "-" if s.memory_gb is None else f"{s.memory_gb:g}"
        price = "-" if s.price_per_hour is None else f"{s.price_per_hour:g}"
        print(
            f"{s.slug:<16} {s.title:<16} {s.tdp_w:>6g} {mem:>7} {s.memory_bandwidth_gbs:>6g} {s.bf16_tflops:>9g} "
            f"{price:>6}  {', '.join(s.gpu_names) or '(every CPU run)'}"
        )


def _cmd_list_hardware(args) -> int:
    from gpu_ops.energy import load_nvml, topology
    from gpu_ops.energy.nvml import visible_targets
    from gpu_ops.environment import cpu_profile, gpu_profile, is_standard_profile

    _print_profiles()
    print(f"\ncpu: {cpu_profile()}")
    nvml, reason = load_nvml()
    if nvml is None:
        print(f"gpus: none ({reason})")
        return 0
    for g in topology(nvml):
        print(
            f"gpu{g.index}: {g.name} uuid={g.uuid} memory={g.memory_bytes >> 20} MiB power_limit={g.power_limit_w} W "
            f"mig={'on' if g.mig_enabled else 'off'}"
        )
        for m in g.mig_instances:
            print(f"  mig gi={m.gpu_instance_id} {m.profile} uuid={m.uuid} compute_fraction={m.compute_fraction:.3f}")
    visible = visible_targets(nvml)
    if visible:
        first = gpu_profile(visible[:1])
        mark = "" if is_standard_profile(first) else " (nonstandard: no gpu_ops/hardware profile names this GPU)"
        try:
            every = gpu_profile(visible)
        except UserError as exc:
            every = f"none ({exc})"
        print(f"profile of gpus [0]: {first}{mark}; of all visible: {every}")
    return 0


def _cmd_validate(args) -> int:
    from gpu_ops.results import read_tables
    from gpu_ops.validation import validate

    findings = validate(read_tables(Path(args.folder)))
    for f in findings:
        print(f"{f.check}: {f.message}" if f.skipped else f"{f.check}: {f.status} - {f.message}")
    return 0 if all(f.passed for f in findings if f.blocking) else 1


def _cmd_keygen(args) -> int:
    from gpu_ops.signing import fingerprint, keygen, parse_public_key

    public = keygen(Path(args.out))
    print(f"private key written to {args.out} (mode 0600: keep it secret)", file=sys.stderr)
    print(
        f"fingerprint {fingerprint(parse_public_key(public))}; give the administrator this public key:", file=sys.stderr
    )
    print(public)
    return 0


def _cmd_sign(args) -> int:
    from gpu_ops.signing import sign_folder

    record = sign_folder(Path(args.folder), Path(args.key), args.submitter)
    print(
        f"signed {args.folder} (content hash {record['content_hash']}) as {record['submitter']} with key "
        f"{record['key_fingerprint']}"
    )
    return 0


def _cmd_submitters(args) -> int:
    import datetime

    from gpu_ops.signing import KeyRegistry

    registry = KeyRegistry.load(Path(args.registry))
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if args.action == "add":
        if not (args.submitter and args.public_key):
            raise UserError("submitters add needs --submitter ID and --public-key 'ed25519:...' (keygen prints it)")
        key = registry.add(args.submitter, args.public_key, now)
    elif args.action == "revoke":
        if not args.fingerprint:
            raise UserError("submitters revoke needs --fingerprint SHA256:... (submitters list shows them)")
        key = registry.revoke(args.fingerprint, now)
    else:
        for k in registry.keys:
            print(
                f"{k.submitter:<24} {k.fingerprint}  added {k.added_at}"
                + (f"  REVOKED {k.revoked_at}" if k.revoked_at else "")
            )
        return 0
    registry.save(Path(args.registry))
    print(f"{args.action}: {key.submitter} {key.fingerprint} in {args.registry}")
    return 0


def _default_registry() -> str:
    import os

    return str(Path(os.environ.get("LEM_STORAGE", "var/storage")) / "submitters.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-energy-measure", description="Measure the energy an LLM spends per token.")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment file and write a result folder")
    r.add_argument("config")
    r.add_argument("--out", default="results", help="folder that receives the result folder (default: results)")
    r.add_argument("--backend", help="run on this backend instead of the file's (pytorch, vllm, tensorrt)")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="set a config field, dotted (e.g. batching.batch_size=8; VALUE is YAML); repeatable",
    )
    r.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (progress stays on stderr)")
    r.add_argument(
        "--show-tokens",
        action="store_true",
        help="print the text of one sampled request per batch as it is generated (decoded in a separate process)",
    )
    r.add_argument(
        "--dry-run", action="store_true", help="print the resolved sweep, request count and estimate; write nothing"
    )
    r.add_argument(
        "--server",
        metavar="SOCKET",
        help="measure on the engine server listening on SOCKET (`serve`): its engines stay warm between runs",
    )
    _add_estimate_options(r)
    g = r.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true")
    g.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=_cmd_run)
    sv = sub.add_parser(
        "serve", help="hold warm engines and measure the experiments `run --server` sends (until Ctrl-C or SIGTERM)"
    )
    sv.add_argument("--socket", required=True, help="Unix socket to listen on (only this user may connect)")
    sv.add_argument(
        "--cache-dir",
        default=None,
        help="engine caches (synthetic weights, compile caches); default: $LEM_ENGINE_CACHE_DIR or "
        "~/.cache/llm-energy-measure/engine",
    )
    sv.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started it ends (how a worker or platform runs it)",
    )
    sv.set_defaults(func=_cmd_serve)
    e = sub.add_parser("estimate", help="predicted wall time, energy and cost of each sweep point, before a run")
    e.add_argument("config")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    _add_estimate_options(e)
    e.set_defaults(func=_cmd_estimate)
    s = sub.add_parser("show-config", help="print the resolved config (non-default values only)")
    s.add_argument("config")
    s.add_argument("--all", action="store_true", help="print every field, defaults included")
    s.set_defaults(func=_cmd_show_config)
    sub.add_parser("list-models", help="builtin and synthetic models").set_defaults(func=_cmd_list_models)
    sub.add_parser("list-presets", help="decoder presets").set_defaults(func=_cmd_list_presets)
    sub.add_parser("list-backends", help="backends and whether they are installed").set_defaults(
        func=_cmd_list_backends
    )
    sub.add_parser(
        "list-hardware", help="standard hardware profiles; this machine's CPU profile, GPUs, MIG"
    ).set_defaults(func=_cmd_list_hardware)
    c = sub.add_parser(
        "compare", help="replay one request trace on several backends; table and energy-vs-throughput chart"
    )
    c.add_argument("config")
    c.add_argument("--backends", required=True, help="comma-separated, e.g. pytorch,vllm")
    c.add_argument("--out", default="compare", help="folder for the result folders, compare.csv/json and compare.html")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=_cmd_compare)
    rp = sub.add_parser("report", help="build the static leaderboard site (offline, plotly) from result folders")
    rp.add_argument("results", nargs="+", help="result folders written by `run`, or folders of them (results/)")
    rp.add_argument("--out", default="site", help="site folder (replaced atomically)")
    rp.add_argument(
        "--dagster-url", default=None, help="public base URL of a Dagster UI, for provenance links (not localhost)"
    )
    rp.add_argument(
        "--site-url", default=None, help="public base URL the site will be served from, for its embed snippets"
    )
    rp.add_argument(
        "--slo",
        default=None,
        help="latency deadlines, e.g. itl_p99=50ms,ttft_p99=2s: prints the lowest-J/token configuration per model x "
        "hardware that meets them (pooled percentiles with 95 %% intervals) and opens slo.html with them",
    )
    rp.add_argument(
        "--conversions",
        default=None,
        help="YAML of carbon and cost inputs (grid gCO2e/kWh, PUE, prices) per instance, hardware profile or "
        "partition; without it carbon and cost are unknown",
    )
    rp.set_defaults(func=_cmd_report)
    v = sub.add_parser("validate", help="run the physics checks on a result folder")
    v.add_argument("folder")
    v.set_defaults(func=_cmd_validate)
    k = sub.add_parser("keygen", help="create an ed25519 key pair for signing result folders")
    k.add_argument("--out", required=True, help="private key file to create (mode 0600); the public key is printed")
    k.set_defaults(func=_cmd_keygen)
    sg = sub.add_parser("sign", help="sign a result folder for upload to a platform's results inbox")
    sg.add_argument("folder")
    sg.add_argument("--key", required=True, help="private key file written by keygen")
    sg.add_argument("--submitter", required=True, help="your submitter id, as the administrator registered it")
    sg.set_defaults(func=_cmd_sign)
    sm = sub.add_parser("submitters", help="administrator: the registry of submitters' public keys")
    sm.add_argument("action", choices=("list", "add", "revoke"))
    sm.add_argument("--registry", default=_default_registry(), help="default: $LEM_STORAGE/submitters.yaml")
    sm.add_argument("--submitter")
    sm.add_argument("--public-key")
    sm.add_argument("--fingerprint")
    sm.set_defaults(func=_cmd_submitters)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # vLLM logs to stdout unless told: keep it clean
    if not verbose:
        os.environ.setdefault(
            "VLLM_LOGGING_LEVEL", "WARNING"
        )  # vLLM reads it on import; its engine processes inherit it
        from gpu_ops.runner import quiet_libraries

        quiet_libraries()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MeasurementError as exc:
        print(f"measurement failed: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
