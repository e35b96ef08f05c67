"""`lingualift push CHECKPOINT_DIR REPO_ID`: share a self-contained checkpoint on the Hugging Face hub.

The upload carries a generated model card (base models, stages and settings, data, evaluation results);
anyone can then load it by id: `lingualift generate --model REPO_ID …`, `LinguaLiftModel.from_pretrained`.
"""

from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="a self-contained LinguaLIFT checkpoint folder")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the hub repo to create or update, OWNER/NAME")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--results", metavar="PATH", help="results.json of `lingualift eval`, tabled in the card")
    parser.add_argument("--license", help="licence id for the card's metadata (e.g. apache-2.0); omitted if not given")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the checkpoint and print the card; upload nothing")


def run(args) -> int:
    from lingualift.tools.hub import check_push, model_card, push_checkpoint

    if args.dry_run:  # the same checks as the upload, then the card it would carry
        print(model_card(check_push(args.checkpoint, args.repo_id, args.results), args.results, repo_id=args.repo_id,
                         license=args.license))
        return 0
    url = push_checkpoint(args.checkpoint, args.repo_id, private=args.private, commit_message=args.commit_message,
                          results=args.results, license=args.license)
    print(f"pushed {args.checkpoint} to {url}")
    return 0
