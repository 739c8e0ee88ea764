"""LogitLens, AttentionView and TokenFlow in Chromium: the exported pages render offline with token text shown as
text (a `<script>` token is read back literally), hover shows the top-k and where a token attends, the grid
follows the container's width; and in JupyterLab the lens updates while a small GPT trains in the cell."""

from __future__ import annotations

import warnings

import pytest
import torch

import hiddenwidgets as hw

from .lab import NotebookPage, network_requests, open_offline, write_notebook

pytest.importorskip("transformers")
warnings.filterwarnings("ignore")

HOSTILE = ["<script>alert(1)</script>", "&amp;", "the", "</script>", "<b>x</b>", "cat"]


def small_gpt(vocab: int = 50):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=vocab, n_positions=64,
                                      bos_token_id=0, eos_token_id=0)).eval()


def test_static_pages_render_tokens_as_text_and_follow_width(browser, tmp_path, artifacts):
    ids = torch.arange(6)[None] + 3
    tokens = [HOSTILE]
    model = small_gpt()
    paths = {}
    for view in (hw.LogitLens(model, ids, tokens=tokens, vocab=[f"v<{i}>" for i in range(50)]),
                 hw.AttentionView(model, ids, tokens=tokens), hw.TokenFlow(model, ids, tokens=tokens)):
        paths[view._view_file] = view.save_html(tmp_path / f"{view._view_file}.html")
    errors: list[str] = []

    page, requests = open_offline(browser, paths["logit_lens"], errors, {"width": 900, "height": 700})
    box = page.locator(".hw-ll canvas.hw-tx-canvas").bounding_box()
    assert box and box["width"] > 300
    page.mouse.move(box["x"] + 78 + 32, box["y"] + 20 + 11)  # the top row (last layer), position 0
    readout = page.locator(".hw-ll .hw-tx-readout").inner_text()
    assert 'position 0 "<script>alert(1)</script>"' in readout and "top 5: v<" in readout, readout
    assert page.evaluate("document.querySelectorAll('script').length") == 2  # the page's own two, nothing injected
    page.screenshot(path=str(artifacts / "logit_lens_static.png"), full_page=True)
    assert network_requests(requests) == []
    page.close()

    # narrow container: fewer positions per page, and the pager says so
    page, _ = open_offline(browser, paths["logit_lens"], errors, {"width": 380, "height": 700})
    text = page.locator(".hw-ll .hw-tx-pager-text").inner_text()
    assert text.startswith("positions 1–4 of 6"), text
    page.click(".hw-ll .hw-tx-pager button:nth-of-type(2)")
    assert page.locator(".hw-ll .hw-tx-pager-text").inner_text().startswith("positions 5–6 of 6")
    page.close()

    page, _ = open_offline(browser, paths["attention_view"], errors)
    assert page.locator(".hw-av .hw-av-thumb").count() == 4  # 2 layers x 2 heads
    box = page.locator(".hw-av canvas.hw-tx-canvas").bounding_box()
    page.mouse.move(box["x"] + 70 + 2, box["y"] + 70 + 2)  # query 0, key 0 of head (0, 0)
    readout = page.locator(".hw-av .hw-tx-readout").inner_text()
    assert readout.startswith('"<script>alert(1)</script>" (0) attends to "<script>alert(1)</script>" (0): 1'), readout
    page.close()

    page, _ = open_offline(browser, paths["token_flow"], errors)
    chips = page.locator(".hw-tf .hw-chip").all_inner_texts()
    assert chips == [f"{i} {t}" for i, t in enumerate(HOSTILE)]
    page.close()
    assert errors == []


def test_the_lens_updates_while_a_gpt_trains(lab, browser, artifacts):
    setup = ("import torch, warnings\nwarnings.filterwarnings('ignore')\nimport hiddenwidgets as hw\n"
             "torch.set_num_threads(1)\n"
             "from transformers import GPT2Config, GPT2LMHeadModel\n"
             "torch.manual_seed(0)\n"
             "lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=40, n_positions=64,\n"
             "                                bos_token_id=0, eos_token_id=0))\n"
             "opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)\n"
             "lens = hw.LogitLens(lm, torch.arange(12)[None] % 7, every=2)\nlens")
    train = ("import time\nt0 = time.time()\nstep = 0\n"
             "while time.time() - t0 < 25 and (time.time() - t0 < 8 or step < 40):\n"
             "    x = (torch.arange(24)[None] + torch.randint(0, 7, (8, 1))) % 7\n"
             "    loss = lm(x, labels=x).loss\n"
             "    opt.zero_grad(); loss.backward(); opt.step(); lens.step(); step += 1\n"
             "    time.sleep(0.02)\n"
             "print('trained', step, 'steps; recorded', len(lens.steps))")
    write_notebook(lab.root / "lens_live.ipynb", [setup, train])
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    cells = NotebookPage(page, lab, "lens_live.ipynb", "lens")
    cells.run_and_wait(0, 120)
    page.wait_for_selector(".hw-ll canvas.hw-tx-canvas", timeout=30_000)
    cells.run_cell(1)
    page.wait_for_function("() => /step \\d+/.test(document.querySelector('.hw-ll .hw-am-frames').textContent)",
                           timeout=30_000)
    first = int(page.locator(".hw-ll .hw-am-frames").inner_text().split()[1])
    page.wait_for_function("(first) => Number(document.querySelector('.hw-ll .hw-am-frames').textContent"
                           ".split(' ')[1]) > first", arg=first, timeout=20_000)
    assert cells.busy(1), "the training cell ended too early for this test"
    page.screenshot(path=str(artifacts / "logit_lens_live.png"))
    cells.wait_done(1, 60)
    assert "recorded" in cells.output_text(1)
    # the slider goes back to the first recorded step; Python sends that step's lens
    page.evaluate("() => { const s = document.querySelector('.hw-ll .hw-tx-steps input'); s.value = '0';"
                  " s.dispatchEvent(new Event('input')); }")
    page.wait_for_function("() => document.querySelector('.hw-ll .hw-am-frames').textContent === 'step 2'",
                           timeout=15_000)
    assert errors == []
    page.close()
