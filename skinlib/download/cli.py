"""``python -m skinlib download``: the command-line front of :func:`skinlib.download.download`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skinlib.config import data_root
from skinlib.download.errors import DownloadError
from skinlib.download.parts import BASE_URL, CITATION, DEFAULT_PARTS, DOI, LICENCE, PARTS, describe_plan, \
    format_bytes, plan
from skinlib.download.pipeline import DOWNLOADS, download
from skinlib.download.progress import configure_logging
from skinlib.errors import SkinlibError

SUMMARY = "Download HAM10000 (and the ISIC 2018 test set) from Harvard Dataverse, verified and unpacked."


def part_table() -> str:
    """One line per part: name, size, what it is."""
    lines = []
    for name, part in PARTS.items():
        sizes = [file.size for file in part.files]
        size = format_bytes(sum(sizes)) if None not in sizes else "?"
        lines.append(f"  {name:<14} {size:>12}  {part.description}")
    return "\n".join(lines)


def description() -> str:
    """The long help text: what is fetched, how large, the licence, and how resuming works."""
    return f"""{SUMMARY}

Source: Harvard Dataverse, {DOI} (https://doi.org/10.7910/DVN/DBW86T).
Parts (--parts, default: {' '.join(DEFAULT_PARTS)}):
{part_table()}

Sizes marked ? are read from the dataset listing at download time.
Licence: {LICENCE}.
Cite: {CITATION}

The dataset folder (--dest) ends up with HAM10000_metadata.csv, HAM10000_images_part_1/ and _part_2/
(and HAM10000_segmentations_lesion_tschandl/, ISIC2018_Task3_Test_Images/,
ISIC2018_Task3_Test_GroundTruth.csv for the other parts), as skinlib.data.load_metadata expects.

Every file's MD5 is checked against the one Dataverse lists; a mismatch deletes the file and fetches
it once more. Dropped connections and 5xx answers are retried with growing waits; 429 (rate limited:
Dataverse's limits are hourly) with waits of 1 to 15 minutes, up to about an hour in all. Without a
network (name not resolved, connection refused) it stops at once. Downloads grow
in <dest>/{DOWNLOADS}/*.part: if the command is interrupted, run it again and it resumes where it
stopped (HTTP Range). Parts already in place are skipped, so re-running is cheap. Free disk space is
checked first (about twice the download size while zips are unpacked)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``download`` options (and its help text) to ``parser``."""
    parser.description = description()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--dest", default=str(data_root()),
                        help="dataset folder (default: $SKINLIB_DATA or data/ham10000, now %(default)s)")
    parser.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS), choices=[*PARTS, "all"],
                        metavar="PART", help=f"parts to fetch: {', '.join(PARTS)}, or all (default: %(default)s)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (only asked when run from a terminal)")
    parser.add_argument("--base-url", default=BASE_URL, help="Dataverse server (default: %(default)s)")
    parser.add_argument("--doi", default=DOI, help="dataset persistent id (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=8,
                        help="retries after a dropped connection, 429 or 5xx before giving up (default: %(default)s)")
    parser.add_argument("--keep-archives", action="store_true",
                        help=f"keep the verified zips in <dest>/{DOWNLOADS} after unpacking them")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars, only warnings and errors")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug messages too")


def confirmed(args: argparse.Namespace) -> bool:
    """Whether to go ahead: ``--yes``, or a yes typed at an interactive prompt (non-interactive: go ahead)."""
    if args.yes or not sys.stdin.isatty():
        return True
    try:
        return input("Download? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run(args: argparse.Namespace) -> int:
    """Run the download command; returns the process exit status (0 done, 1 failed or declined)."""
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    items = plan(args.dest, args.parts)
    print(describe_plan(items, args.dest), file=sys.stderr)
    if items and not confirmed(args):
        print("Cancelled; nothing downloaded.", file=sys.stderr)
        return 1
    try:
        download(args.dest, args.parts, base_url=args.base_url, doi=args.doi, retries=args.retries,
                 progress=not args.quiet, keep_archives=args.keep_archives)
    except (DownloadError, SkinlibError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        partial = Path(args.dest) / DOWNLOADS
        kept = (f" (partial files are kept in {partial})" if partial.is_dir() else
                " (nothing half-written was left behind)")
        print(f"\nInterrupted. Run the same command again to resume{kept}.", file=sys.stderr)
        return 130
    print(f"Done: {' '.join(args.parts)} in {args.dest}.", file=sys.stderr)
    return 0
