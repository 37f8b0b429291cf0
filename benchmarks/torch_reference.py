"""The PyTorch peer of vaegan_jax's train step at the paper's 64x64 CelebA architecture.

Written from the paper's architecture table, to time vaegan_jax against PyTorch on the same machine in
one run (benchmarks/compare_with_torch.sh on the CPU, experiments/gpu_benchmark.sh on a GPU), in a
venv of its own (`pip install torch`), or with a GPU machine's own PyTorch (`--device cuda`;
`--compile MODE` adds torch.compile). CI has no torch: tests/test_scripts.py runs the scripts that
call this file with a stand-in for it. Four step styles:
  sequential: three backward passes with retain_graph and an optimiser step after each, as the
              common PyTorch ports do (run under allow_mutation_on_saved_tensors, which newer
              PyTorch needs for that order);
  minimal:    one forward pass, gradients pulled back per network with autograd.grad (least work),
              channels_last;
  authors_mar: the authors' March passes (Dec(z) with Dis_l([x~; x]) for L_llike; Dec(zp) with
              Dis([x; xp]) for L_GAN), pulled back like minimal: the same work as the faithful
              `celeba64.py:mar` step.
  authors_feb: the authors' February passes (Dec(z) with Dis_l([x~; x]) for L_llike; Dec([sg(z); zp])
              with Dis([x; x~'; xp]) for L_GAN, reals weighted 0.66 and fakes 0.17): the same work
              as the faithful default `celeba64.py`.
Timing waits for the device (torch.cuda.synchronize) before each clock read.
Prints one JSON line: images/s median/min/max over --runs runs of --steps steps after warm-up, and
the FLOPs of one step as torch.utils.flop_counter.FlopCounterMode counts them (convolutions and
matmuls, forward and backward, 2 per multiply-add), counted on one eager step before any
compilation; benchmarks/train_step.py counts XLA's side from its lowered HLO.
"""
import argparse, contextlib, json, statistics, time
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

Z = 128


def block(cin, cout, stride, bn=True, transpose=False):
  if transpose:
    conv = nn.ConvTranspose2d(cin, cout, 5, 2, 2, output_padding=1, bias=False)
  else:
    conv = nn.Conv2d(cin, cout, 5, stride, 2, bias=not bn)
  layers = [conv] + ([nn.BatchNorm2d(cout, momentum=0.1)] if bn else []) + [nn.ReLU()]
  return nn.Sequential(*layers)


class Encoder(nn.Module):
  def __init__(self, fc):
    super().__init__()
    self.convs = nn.Sequential(block(3, 64, 2), block(64, 128, 2), block(128, 256, 2))
    self.fc = nn.Sequential(nn.Linear(256 * 8 * 8, fc, bias=False), nn.BatchNorm1d(fc), nn.ReLU())
    self.mu, self.logvar = nn.Linear(fc, Z), nn.Linear(fc, Z)

  def forward(self, x):
    h = self.fc(self.convs(x).flatten(1))
    return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
  def __init__(self):
    super().__init__()
    self.fc = nn.Sequential(nn.Linear(Z, 8 * 8 * 256, bias=False), nn.BatchNorm1d(8 * 8 * 256), nn.ReLU())
    self.ups = nn.Sequential(block(256, 256, 2, transpose=True), block(256, 128, 2, transpose=True),
                             block(128, 32, 2, transpose=True))
    self.out = nn.Sequential(nn.Conv2d(32, 3, 5, 1, 2), nn.Tanh())
    self.channels_last = False

  def forward(self, z):
    h = self.fc(z).view(-1, 256, 8, 8)
    if self.channels_last:
      h = h.contiguous(memory_format=torch.channels_last)
    return self.out(self.ups(h))


class Discriminator(nn.Module):
  def __init__(self):
    super().__init__()
    self.c1 = nn.Sequential(nn.Conv2d(3, 32, 5, 1, 2), nn.ReLU())
    self.c2, self.c3 = block(32, 128, 2), block(128, 256, 2)
    self.c4 = nn.Conv2d(256, 256, 5, 2, 2, bias=False)  # Dis_l is this conv's output, before BN
    self.c4_rest = nn.Sequential(nn.BatchNorm2d(256), nn.ReLU())
    self.fc = nn.Sequential(nn.Linear(256 * 8 * 8, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                            nn.Linear(512, 1), nn.Sigmoid())

  def forward(self, x):
    feat = self.c4(self.c3(self.c2(self.c1(x))))
    return self.fc(self.c4_rest(feat).flatten(1)), feat


def losses(x, mu, logvar, prob, feat, b):
  prior = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
  llike = 0.5 * torch.sum((feat[b:2 * b] - feat[:b].detach()) ** 2)
  gan = -torch.sum(torch.log(prob[:b] + 1e-3)) - torch.sum(torch.log(1 - prob[b:] + 1e-3))
  return prior, llike, gan


def step_sequential(nets, opts, x, gamma):
  enc, dec, dis = nets
  b = len(x)
  with torch.autograd.graph.allow_mutation_on_saved_tensors():
    mu, logvar = enc(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    x_rec, x_p = dec(z), dec(torch.randn(b, Z, device=x.device))
    prob, feat = dis(torch.cat([x, x_rec, x_p]))
    prior, llike, gan = losses(x, mu, logvar, prob, feat, b)
    for net, opt, loss in ((enc, opts[0], prior + llike), (dec, opts[1], gamma * llike - gan), (dis, opts[2], gan)):
      for n in nets:
        n.zero_grad(set_to_none=True)
      loss.backward(retain_graph=net is not dis)
      opt.step()


def step_minimal(nets, opts, x, gamma):
  enc, dec, dis = nets
  b = len(x)
  mu, logvar = enc(x)
  z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
  z_d = z.detach().requires_grad_()
  x_rec, x_p = dec(z_d), dec(torch.randn(b, Z, device=x.device))
  r_d, p_d = x_rec.detach().requires_grad_(), x_p.detach().requires_grad_()
  prob, feat = dis(torch.cat([x, r_d, p_d]).contiguous(memory_format=torch.channels_last))
  prior, llike, gan = losses(x, mu, logvar, prob, feat, b)
  dis_params = list(dis.parameters())
  g = torch.autograd.grad(gan, dis_params + [r_d, p_d], retain_graph=True)
  g_dis, gan_r, gan_p = g[:-2], g[-2], g[-1]
  llike_r, = torch.autograd.grad(llike, [r_d])
  dec_params = list(dec.parameters())
  g_dec = torch.autograd.grad((x_rec, x_p), dec_params, (gamma * llike_r - gan_r, -gan_p), retain_graph=True)
  dz, = torch.autograd.grad(x_rec, z_d, llike_r)
  enc_params = list(enc.parameters())
  g_enc = torch.autograd.grad((prior, z), enc_params, (torch.ones((), device=x.device), dz))
  for params, grads, opt in ((enc_params, g_enc, opts[0]), (dec_params, g_dec, opts[1]), (dis_params, g_dis, opts[2])):
    for p, gr in zip(params, grads):
      p.grad = gr
    opt.step()


def authors_pullbacks(nets, opts, prior, z, z_d, x_rec, llike_r, fakes, fakes_grad, g_dis, gamma):
  """The rest of an authors_* step, as vaegan_jax routes it: L_llike's cotangent pulled back once
  through the reconstruction pass (the decoder's gradient, weighted gamma, and d z for the
  encoder), the fakes' once through the generation pass, the encoder's through its pass; then
  one optimiser step per network."""
  enc, dec, dis = nets
  dec_params, enc_params = list(dec.parameters()), list(enc.parameters())
  *g_rec, dz = torch.autograd.grad(x_rec, dec_params + [z_d], llike_r)
  g_fakes = torch.autograd.grad(fakes, dec_params, fakes_grad)
  g_dec = [gamma * a + b for a, b in zip(g_rec, g_fakes)]
  g_enc = torch.autograd.grad((prior, z), enc_params, (torch.ones((), device=z.device), dz))
  for params, grads, opt in ((enc_params, g_enc, opts[0]), (dec_params, g_dec, opts[1]),
                             (list(dis.parameters()), g_dis, opts[2])):
    for p, gr in zip(params, grads):
      p.grad = gr
    opt.step()


def step_authors_mar(nets, opts, x, gamma):
  """The authors' March computation (model/aegan.py with discriminate_ae_recon=False): Dec(z) and
  Dis_l([x~; x]) in passes of their own for L_llike; Dec(zp) and Dis([x; xp]) for L_GAN."""
  enc, dec, dis = nets
  b = len(x)
  cl = torch.channels_last
  mu, logvar = enc(x)
  z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
  z_d = z.detach().requires_grad_()
  x_rec, x_p = dec(z_d), dec(torch.randn(b, Z, device=x.device))
  r_d, p_d = x_rec.detach().requires_grad_(), x_p.detach().requires_grad_()
  feat = dis.c4(dis.c3(dis.c2(dis.c1(torch.cat([r_d, x]).contiguous(memory_format=cl)))))
  llike = 0.5 * torch.sum((feat[:b] - feat[b:].detach()) ** 2)
  prob, _ = dis(torch.cat([x, p_d]).contiguous(memory_format=cl))
  prior = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
  gan = -torch.sum(torch.log(prob[:b] + 1e-3)) - torch.sum(torch.log(1 - prob[b:] + 1e-3))
  dis_params = list(dis.parameters())
  g = torch.autograd.grad(gan, dis_params + [p_d])
  g_dis, gan_p = g[:-1], g[-1]
  llike_r, = torch.autograd.grad(llike, [r_d])
  authors_pullbacks(nets, opts, prior, z, z_d, x_rec, llike_r, x_p, -(1 - gamma) * gan_p, g_dis,
                    gamma)


def step_authors_feb(nets, opts, x, gamma, w_real=0.66):
  """The authors' February computation (model/aegan.py, celeba_aegan.py of Feb 2016): Dec(z) and
  Dis_l([x~; x]) for L_llike; the fakes Dec([sg(z); zp]) and Dis([x; fakes]) for L_GAN, with the fake
  weight derived as (1 - w_real) * B / (2B); the decoder takes -(1 - gamma) / w_fake of the fakes'
  gradient (the code's ScaleGradient reversal)."""
  enc, dec, dis = nets
  b = len(x)
  cl = torch.channels_last
  w_fake = (1 - w_real) * b / (2 * b)
  mu, logvar = enc(x)
  z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
  z_d = z.detach().requires_grad_()
  x_rec = dec(z_d)
  r_d = x_rec.detach().requires_grad_()
  feat = dis.c4(dis.c3(dis.c2(dis.c1(torch.cat([r_d, x]).contiguous(memory_format=cl)))))
  llike = 0.5 * torch.sum((feat[:b] - feat[b:].detach()) ** 2)
  fakes = dec(torch.cat([z.detach(), torch.randn_like(z)]))
  f_d = fakes.detach().requires_grad_()
  prob, _ = dis(torch.cat([x, f_d]).contiguous(memory_format=cl))
  prior = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
  gan = (-w_real * torch.sum(torch.log(prob[:b] + 1e-3))
         - w_fake * torch.sum(torch.log(1 - prob[b:] + 1e-3)))
  dis_params = list(dis.parameters())
  g = torch.autograd.grad(gan, dis_params + [f_d])
  g_dis, gan_f = g[:-1], g[-1]
  llike_r, = torch.autograd.grad(llike, [r_d])
  authors_pullbacks(nets, opts, prior, z, z_d, x_rec, llike_r, fakes, -(1 - gamma) / w_fake * gan_f,
                    g_dis, gamma)


class _GlobalOnly:
  """FlopCounterMode's per-module hooks break autograd.grad on leaf tensors, which the styles
  use; count the whole step only ('Global')."""
  parents = {"Global"}

  def __enter__(self):
    return self

  def __exit__(self, *exception):
    return None


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--style", choices=["sequential", "minimal", "authors_mar", "authors_feb"], default="minimal")
  ap.add_argument("--fc", type=int, default=2048, help="encoder hidden width (the Feb/Mar code: 1024)")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--runs", type=int, default=3)
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (params stay float32)")
  ap.add_argument("--threads", type=int, default=0)
  ap.add_argument("--device", default="cpu", help="cpu or cuda")
  ap.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead", "max-autotune"],
                  help="torch.compile each network with this mode")
  ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions on a GPU")
  a = ap.parse_args()
  if a.threads:
    torch.set_num_threads(a.threads)
  device = torch.device(a.device)
  if device.type == "cuda":
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
  torch.manual_seed(0)
  nets = tuple(n.to(device) for n in (Encoder(a.fc), Decoder(), Discriminator()))
  opts = [torch.optim.RMSprop(n.parameters(), lr=3e-4, alpha=0.9, eps=1e-8) for n in nets]
  data = [torch.rand(a.batch, 3, 64, 64, device=device) * 2 - 1 for _ in range(4)]
  step = {"minimal": step_minimal, "sequential": step_sequential, "authors_mar": step_authors_mar,
          "authors_feb": step_authors_feb}[a.style]
  if a.style != "sequential":
    nets = tuple(n.to(memory_format=torch.channels_last) for n in nets)
    nets[1].channels_last = True
    data = [d.contiguous(memory_format=torch.channels_last) for d in data]
  ctx = torch.autocast(device.type, dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext()
  counter = FlopCounterMode(display=False)
  counter.mod_tracker = _GlobalOnly()
  with ctx, counter:
    step(nets, opts, data[0], 1e-6)
  flops_per_step = counter.get_total_flops()
  if a.compile != "none":
    torch._functorch.config.donated_buffer = False  # the steps pull back through a graph twice
    for n in nets:
      n.forward = torch.compile(n.forward, mode=a.compile)
      if isinstance(n, Discriminator):  # the feature pass calls the layers directly
        for name in ("c1", "c2", "c3", "c4"):
          setattr(n, name, torch.compile(getattr(n, name), mode=a.compile))
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
  with ctx:
    t0 = time.perf_counter()
    for i in range(3 if a.compile != "none" else 2):
      step(nets, opts, data[i % 4], 1e-6)
    sync()
    warmup_s = time.perf_counter() - t0
    ips = []
    for _ in range(a.runs):
      sync()
      t = time.perf_counter()
      for i in range(a.steps):
        step(nets, opts, data[i % 4], 1e-6)
      sync()
      ips.append(a.batch * a.steps / (time.perf_counter() - t))
  print(json.dumps({"peer": f"torch-{a.style}", "bf16": a.bf16, "fc": a.fc, "batch": a.batch,
                    "device": str(device), "compile": a.compile, "tf32": a.tf32,
                    "images_per_s": statistics.median(ips), "min": min(ips), "max": max(ips),
                    "ms_per_step": 1000 * a.batch / statistics.median(ips), "warmup_s": warmup_s,
                    "flops_per_step": flops_per_step,
                    "peak_memory_bytes": (torch.cuda.max_memory_allocated() if device.type == "cuda"
                                          else None),
                    "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
  main()
