"""Where the chain of a CLIP-guided edit breaks in the toy world, prompt by prompt.

``python -m benchmarks.quality_diagnose [--quick] [--latents 100] [--opt-latents 24]
[--opt-steps 200] [--mapper-steps 1000] [--no-mapper] [--name STEM]``

Three links, each measured against the world's ground truth (the oracle: the generator's
render of the counterfactual attribute vector, ``quality_toyfaces.counterfactual``):

1. **CLIP** (nothing trained): does the toy CLIP rank the oracle edit above the original, and
   above the prompt's colour put on a *wrong* part ("blue eyes" for "blue goatee": every other
   part, the hardest one counts), by direct cosine with the prompt and by CF-CLIP's direction
   (E_I(edit) - E_I(src) against E_T(tgt) - E_T("face"), both through the 80 ImageNet
   templates)? Which CLIP-NCE loss does the trainer see for the oracle, the hardest wrong part
   and no edit (the oracle must be lowest)? How far does CLIP-NCE's random perspective warp
   alone move an image's embedding, against how far the oracle edit moves it?
2. **Upper bound**: StyleCLIP's latent optimisation, per image (W+, Adam at lr 0.1, 1 - cos of
   CLIP's image and prompt embeddings plus 0.008 x the squared L2 distance to the start, its
   defaults), with the same CLIP: if it cannot reach the attribute while keeping the rest, no
   mapper trained through that CLIP can.
3. **Mapper**: MCA-CLIP, one model per prompt, without masks (w/o PRE) and with masks,
   trained as the benchmark trains them (its run cache is shared) and scored by its evaluator;
   with masks, where they open: the mean mask inside and outside the target's region, per
   layer.

Writes ``benchmarks/results/quality_diagnose.{json,md}`` (``--quick``: ``*_quick``, a smoke
test). ``MCACLIP_TOYFACES_ASSETS=DIR`` diagnoses another build of the world.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS, machine_info
from benchmarks.quality_toyfaces import (
    PROMPTS,
    attribute_scores,
    counterfactual,
    evaluate,
    render_faces,
    train_methods,
    write_outputs,
)
from mcaclip.toyfaces.attributes import Face
from mcaclip.toyfaces.clip import ensemble
from mcaclip.toyfaces.demo import TOY_MASK_WEIGHTS
from mcaclip.training.templates import IMAGENET_TEMPLATES

# a part -> the changes that put colour c on it (giving the part where it is absent)
PART_CHANGES = {
    "hair": lambda f, c: {"hair_colour": c, "hair_style": f.hair_style.replace("bald", "short")},
    "eyes": lambda f, c: {"eye_colour": c},
    "lips": lambda f, c: {"lip_colour": c},
    "beard": lambda f, c: {"beard": f.beard.replace("none", "goatee"), "beard_colour": c},
    "glasses": lambda f, c: {"glasses": f.glasses.replace("none", "round"), "glasses_colour": c},
    "background": lambda f, c: {"background_colour": c},
}


PART_WORDS = {"hair": "hair", "eyes": "eyes", "lips": "lips", "beard": "goatee"}
PART_WORDS |= {"glasses": "glasses", "background": "background"}
NCE_DISTORTIONS = (0.5, 0.25, 0.0)  # CLIP-NCE views' perspective strength; first: CF-CLIP's


def wrong_part_faces(faces: list[Face], prompt: str) -> dict[str, list[Face]]:
    """Part -> the faces with the prompt's colour on that part, for every part but its own."""
    region = PROMPTS[prompt][1]
    colour = prompt.split()[0]
    return {
        part: [dataclasses.replace(f, **change(f, colour)) for f in faces]
        for part, change in PART_CHANGES.items()
        if part != region
    }


def templated(clip, text: str) -> torch.Tensor:
    """[D] ``text``'s embedding ensembled over the 80 ImageNet templates (CLIP-NCE's prompts)."""
    return ensemble(clip, [t.format(text) for t in IMAGENET_TEMPLATES])


@torch.no_grad()
def clip_checks(G, clip, faces: list[Face], prompts: list[str], seed: int = 0) -> dict:
    """Link 1 per prompt (see the module docstring), and the warp's shift over all faces."""
    from mcaclip.training.losses import ClipNCELoss, random_perspective

    x = render_faces(G, faces)
    e_x = clip.encode_image(x)
    warped = clip.encode_image(random_perspective(x, generator=torch.Generator().manual_seed(seed)))
    # CLIP-NCE with CF-CLIP's views (distortion 0.5, form "") and milder ones
    losses = {
        ("" if d == NCE_DISTORTIONS[0] else f"_d{d:g}"): ClipNCELoss(clip, distortion=d)
        for d in NCE_DISTORTIONS
    }
    source = templated(clip, "face")
    n = len(faces)

    def nce_of(images, prompt, form="") -> float:
        nce = losses[form]
        nce.generator = torch.Generator().manual_seed(seed)  # the same views for every edit
        return float(nce(x, images, [prompt] * n))

    out = {
        "warp_cosine_to_original": float((warped * e_x).sum(1).mean()),
        "prompts": {},
    }
    for prompt in prompts:
        oracle = render_faces(G, [counterfactual(f, PROMPTS[prompt][0]) for f in faces])
        e_o = clip.encode_image(oracle)
        wrong = {p: render_faces(G, fs) for p, fs in wrong_part_faces(faces, prompt).items()}
        e_w = {p: clip.encode_image(im) for p, im in wrong.items()}
        t = clip.embed_prompts([prompt])[0]
        direction = F.normalize(templated(clip, prompt) - source, dim=-1)

        # the prompt's own text direction against the same colour on the wrong parts' words
        colour = prompt.split()[0]
        text_cos = {
            p: float(
                direction
                @ F.normalize(templated(clip, f"{colour} {PART_WORDS[p]}") - source, dim=-1)
            )
            for p in e_w
        }
        c_w = torch.stack([e @ t for e in e_w.values()])  # [parts, N]
        d_w = torch.stack([_along(e, e_x, direction) for e in e_w.values()])
        c_o, d_o = e_o @ t, _along(e_o, e_x, direction)
        nce_forms = {}
        for form in losses:
            nce_wrong = {p: nce_of(im, prompt, form) for p, im in wrong.items()}
            hardest = min(nce_wrong, key=nce_wrong.get)
            nce_forms.update(
                {
                    f"nce{form}_oracle": nce_of(oracle, prompt, form),
                    f"nce{form}_hardest_wrong_part": nce_wrong[hardest],
                    f"hardest_wrong_part{form}": hardest,
                    f"nce{form}_no_edit": nce_of(x, prompt, form),
                }
            )
        out["prompts"][prompt] = {
            "cosine_oracle_over_original": float((c_o > e_x @ t).float().mean()),
            "cosine_oracle_over_wrong_parts": float((c_o > c_w.amax(0)).float().mean()),
            "direction_oracle_over_wrong_parts": float((d_o > d_w.amax(0)).float().mean()),
            "direction_oracle": float(d_o.mean()),
            "direction_hardest_wrong_part": float(d_w.mean(1).max()),
            **nce_forms,
            "oracle_cosine_to_original": float((e_o * e_x).sum(1).mean()),
            "text_direction_cosine_to_wrong_parts": text_cos,
        }
    return out


def _along(e: torch.Tensor, e_x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Cosine of each image change e - e_x [N, D] with a text ``direction`` [D]."""
    return F.normalize(e - e_x, dim=-1) @ direction


def latent_optimisation(
    G,
    clip,
    probe,
    faces: list[Face],
    w: torch.Tensor,
    prompt: str,
    steps: int = 200,
    lr: float = 0.1,
    l2: float = 0.008,
) -> dict:
    """Link 2: StyleCLIP's optimisation of each latent w [N, L, D] for ``prompt``; success and
    attributes kept as the benchmark scores them."""
    text = clip.embed_prompts([prompt])
    with torch.no_grad():
        x = G.synthesis(w)
        orig_pred = probe.predict(x)
    latent = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr)
    for _ in range(steps):
        loss_clip = (1 - clip.encode_image(G.synthesis(latent)) @ text.t()).mean()
        loss_l2 = (latent - w).square().sum((1, 2)).mean()
        loss = loss_clip + l2 * loss_l2
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        edited = G.synthesis(latent).clamp(-1, 1)
        cf = [counterfactual(f, PROMPTS[prompt][0]) for f in faces]
        success, kept = attribute_scores(probe, edited, orig_pred, faces, cf, PROMPTS[prompt][0])
    return {
        "success": float(success.mean()),
        "attributes_kept": float(kept.mean()),
        "clip_loss": loss_clip.item(),
        "latent_distance": float((latent.detach() - w).norm(dim=-1).mean()),
    }


def report(payload: dict) -> str:
    """The markdown tables of one diagnosis."""
    clip, bound, mapper = payload["clip"], payload.get("upper_bound"), payload.get("mapper")
    lines = [
        "CLIP (link 1): share of faces where the oracle edit wins; NCE: CLIP-NCE loss the "
        "trainer sees (lower is better)",
        "",
        "| prompt | cos: oracle > original | cos: oracle > every wrong part | direction: oracle > "
        "every wrong part | NCE oracle | NCE hardest wrong part | NCE no edit | text direction: "
        "highest cosine to a wrong part's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, r in clip["prompts"].items():
        text_cos = r["text_direction_cosine_to_wrong_parts"]
        closest = max(text_cos, key=text_cos.get)
        lines.append(
            f"| {p} | {r['cosine_oracle_over_original']:.0%} | "
            f"{r['cosine_oracle_over_wrong_parts']:.0%} | "
            f"{r['direction_oracle_over_wrong_parts']:.0%} | {r['nce_oracle']:.2f} | "
            f"{r['nce_hardest_wrong_part']:.2f} ({r['hardest_wrong_part']}) | "
            f"{r['nce_no_edit']:.2f} | {text_cos[closest]:.2f} ({closest}) |"
        )
    lines += [
        "",
        "CLIP-NCE by the strength of its views' perspective warp (0.5: CF-CLIP's): oracle / "
        "hardest wrong part / no edit",
        "",
        "| prompt | " + " | ".join(f"distortion {d:g}" for d in NCE_DISTORTIONS) + " |",
        "|---|" + "---|" * len(NCE_DISTORTIONS),
    ]
    for p, r in clip["prompts"].items():
        cells = []
        for d in NCE_DISTORTIONS:
            f = "" if d == NCE_DISTORTIONS[0] else f"_d{d:g}"
            if f"nce{f}_oracle" in r:
                cells.append(
                    f"{r[f'nce{f}_oracle']:.2f} / {r[f'nce{f}_hardest_wrong_part']:.2f} "
                    f"({r[f'hardest_wrong_part{f}']}) / {r[f'nce{f}_no_edit']:.2f}"
                )
            else:
                cells.append("-")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    mean_shift = np.mean([r["oracle_cosine_to_original"] for r in clip["prompts"].values()])
    lines += [
        "",
        f"Embedding cosine to the original: under CLIP-NCE's perspective warp alone "
        f"{clip['warp_cosine_to_original']:.3f}; the oracle edit {mean_shift:.3f} (a warp that "
        "moves the embedding as far as the edit drowns the edit's direction).",
        "",
    ]
    if bound:
        lines += [
            "Upper bound (link 2): StyleCLIP latent optimisation per image",
            "",
            "| prompt | success | attrs kept | CLIP loss | latent distance |",
            "|---|---|---|---|---|",
        ]
        for p, r in bound.items():
            lines.append(
                f"| {p} | {r['success']:.0%} | {r['attributes_kept']:.0%} | "
                f"{r['clip_loss']:.3f} | {r['latent_distance']:.2f} |"
            )
        lines.append("")
    if mapper:
        lines += [
            "Mapper (link 3): MCA-CLIP per prompt without and with masks",
            "",
            "| prompt | w/o PRE success | w/o PRE kept | MCA success | MCA kept | mask focus | "
            "mask IoU | per-layer mask inside / outside the region |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in mapper["mca-clip"]:
            a, b = mapper["mca-wo-pre"][p], mapper["mca-clip"][p]
            layers = " ".join(
                f"{i:.2f}/{o:.2f}"
                for i, o in zip(b["mask_inside_per_layer"], b["mask_outside_per_layer"])
            )
            lines.append(
                f"| {p} | {a['success']:.0%} | {a['attributes_kept']:.0%} | {b['success']:.0%} | "
                f"{b['attributes_kept']:.0%} | {b['mask_focus']:+.2f} | {b['mask_iou']:.2f} | "
                f"{layers} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: few latents and steps")
    ap.add_argument("--latents", type=int, default=100, help="held-out latents for CLIP")
    ap.add_argument("--opt-latents", type=int, default=24, help="0: no upper bound (link 2)")
    ap.add_argument("--opt-steps", type=int, default=200)
    ap.add_argument("--mapper-steps", type=int, default=1000)
    ap.add_argument("--no-mapper", action="store_true", help="links 1 and 2 only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=Path("runs/quality_toyfaces"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", help="file stem (default quality_diagnose[_quick])")
    args = ap.parse_args(argv)
    from mcaclip.nn.editor import MCAEditor
    from mcaclip.toyfaces.world import asset, load_probe, preset

    prompts = list(PROMPTS)
    if args.quick:
        args.latents, args.opt_latents, args.opt_steps, args.mapper_steps = 8, 2, 2, 2
        prompts = prompts[:2]
        args.runs = args.runs.with_name(args.runs.name + "_quick")
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    # the world's generator and CLIP, as an editor of the world loads them
    world = MCAEditor.from_preset(
        preset(),
        generator=asset("generator.safetensors"),
        clip_weights=asset("clip.safetensors"),
    ).eval()
    G, clip, probe = world.generator, world.clip, load_probe()
    faces = [Face(**f) for f in json.loads(asset("test_faces.json").read_text())]
    latents = torch.load(asset("test_latents.pt"), weights_only=True).float()
    payload: dict = {
        "machine": machine_info(),
        "latents": args.latents,
        "seed": args.seed,
        "clip": clip_checks(G, clip, faces[: args.latents], prompts, args.seed),
    }
    print(f"CLIP checks: {time.perf_counter() - t0:.0f} s", flush=True)
    n = args.opt_latents
    bound = {}
    for prompt in prompts if n and args.opt_steps else []:
        bound[prompt] = latent_optimisation(
            G, clip, probe, faces[:n], latents[:n], prompt, steps=args.opt_steps
        )
        print(f"upper bound {prompt}: {bound[prompt]}", flush=True)
    payload["upper_bound"] = bound
    payload["upper_bound_settings"] = {
        "latents": n,
        "steps": args.opt_steps,
        "lr": 0.1,
        "l2": 0.008,
    }
    if not args.no_mapper:
        editors = train_methods(
            prompts,
            args.runs,
            args.mapper_steps,
            4,
            args.seed,
            TOY_MASK_WEIGHTS,
            ["mca-wo-pre", "mca-clip"],
            per_prompt=True,
        )
        results, _ = evaluate(editors, prompts, args.latents)
        payload["mapper"] = {m: results[m] for m in ("mca-wo-pre", "mca-clip")}
        payload["mapper_settings"] = {"steps": args.mapper_steps, "batch": 4, "per_prompt": True}
    payload["seconds"] = time.perf_counter() - t0
    stem = args.name or ("quality_diagnose_quick" if args.quick else "quality_diagnose")
    table = report(payload)
    write_outputs(args.out, stem, payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
