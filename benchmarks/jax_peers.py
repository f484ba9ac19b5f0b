"""JAX peers of ``bench_population.py``'s cases: the same model, in JAX, the way users who
want many small training runs write it (``jit(vmap(step))``, ``lax.scan`` over steps).

A peer copies its initial parameters from ``task.init_module(0)`` (keyed by our parameter
names), takes the same batches (``task.data.batch("train", s)``) and the same K hparams, and
updates with the same TF-Adam formula (ε before the bias correction), all in float32, so its
parameters after a few steps match the population engine's (:func:`max_param_diff`). It has
no divergence freeze (ours has). Covered: the MLP (``lab_mlp``), TaskSet's conv net with
global pooling (``conv_pooling_family``, no augmentation) and TaskSet's character RNN
language model with the GRU core (``char_rnn_language_model_family``).

jax is imported lazily (by the peers' constructors): ``bench_population.py`` sets
``XLA_FLAGS`` for ``--threads 1`` before the first import.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from taskset_lab.optim import ADAM4P
from taskset_lab.tasks import Task
from taskset_lab.tasks.families.mlp import MLP
from taskset_lab.tasks.families.taskset_conv import ConvPoolingNet
from taskset_lab.tasks.families.taskset_rnn_lm import RNNLanguageModel
from taskset_lab.tasks.layers import same_padding

Params = dict[str, Any]
Loss = Callable[[Params, Any, Any], Any]


def jax_available() -> bool:
    """Whether the optional ``bench`` extra (jax, optax) is installed."""
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError:
        return False
    return True


def _activation(name: str) -> Callable[[Any], Any]:
    """The JAX twin of ``taskset_lab.tasks.activations.ACTIVATIONS[name]`` (TaskSet's names;
    ``lab_mlp``'s ``leaky_relu`` is TaskSet's ``leaky_relu2``)."""
    import jax
    import jax.numpy as jnp

    def leaky(slope: float) -> Callable[[Any], Any]:
        # PyTorch's gradient at exactly 0 is the slope (jax.nn.leaky_relu's is 1); conv outputs
        # over blank image regions are exactly 0 at initialisation (zero biases)
        return lambda x: jnp.where(x > 0, x, slope * x)

    table = {"relu": jax.nn.relu, "tanh": jnp.tanh, "cos": jnp.cos, "elu": jax.nn.elu,
             "sigmoid": jax.nn.sigmoid, "swish": lambda x: x * jax.nn.sigmoid(x),
             "leaky_relu4": leaky(0.4), "leaky_relu2": leaky(0.2), "leaky_relu1": leaky(0.1)}
    table["leaky_relu"] = table["leaky_relu2"]
    return table[name]


def _cross_entropy(logits: Any, labels: Any) -> Any:
    """Mean cross-entropy over all rows (``F.cross_entropy``'s default reduction)."""
    import jax
    import jax.numpy as jnp

    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def _linear(x: Any, p: Params, name: str) -> Any:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


class JaxPeer:
    """K configs of one case in JAX. Subclasses say how the module computes its loss
    (:meth:`make_loss`) and what it is fed (:meth:`inputs`). ``per_step``: ``jit(vmap(step))``
    called once per step; ``scan``: ``lax.scan`` of that step over all steps in one call."""

    module_type: type[nn.Module]

    def __init__(self, task: Task, configs: Sequence[Mapping[str, float]], max_steps: int):
        import jax
        import jax.numpy as jnp

        module = task.init_module(0)
        if not isinstance(module, self.module_type):
            raise NotImplementedError(f"{type(self).__name__} covers {self.module_type.__name__} only")
        k = len(configs)
        self.k, self.configs, self.jnp, self.jax = k, list(configs), jnp, jax
        self.params0 = {name: jnp.broadcast_to(p.detach().numpy(), (k,) + tuple(p.shape))
                        for name, p in module.named_parameters()}
        self.hp = {n: jnp.asarray(np.array([c[n] for c in configs], dtype=np.float32))
                   for n in ("lr", "beta1", "beta2", "eps")}
        loss = self.make_loss(module)
        xs, ys = zip(*(self.inputs(module, task.data.batch("train", s)) for s in range(max_steps)))
        self.xs, self.ys = jnp.asarray(np.stack(xs)), jnp.asarray(np.stack(ys))

        def step_one(params, m, v, t, hp, x, y):
            value, grads = jax.value_and_grad(loss)(params, x, y)
            lr_t = hp["lr"] * jnp.sqrt(1 - hp["beta2"] ** t) / (1 - hp["beta1"] ** t)
            m = jax.tree_util.tree_map(lambda a, g: hp["beta1"] * a + (1 - hp["beta1"]) * g, m, grads)
            v = jax.tree_util.tree_map(lambda a, g: hp["beta2"] * a + (1 - hp["beta2"]) * g * g, v, grads)
            params = jax.tree_util.tree_map(lambda p, a, b: p - lr_t * a / (jnp.sqrt(b) + hp["eps"]),
                                            params, m, v)
            return params, m, v, value

        vstep = jax.vmap(step_one, in_axes=(0, 0, 0, None, 0, None, None))
        self.step = jax.jit(vstep)

        def scan(params, m, v, xs, ys):
            def body(carry, inp):
                p, a, b, t = carry
                p, a, b, value = vstep(p, a, b, t, self.hp, inp[0], inp[1])
                return (p, a, b, t + 1.0), value
            (p, a, b, _), values = jax.lax.scan(body, (params, m, v, jnp.float32(1.0)), (xs, ys))
            return p, values

        self.scan = jax.jit(scan)
        self._scans: dict[int, Any] = {}

    def inputs(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(x, labels)`` of one batch as numpy arrays (float32 / int32)."""
        raise NotImplementedError

    def make_loss(self, module: nn.Module) -> Loss:
        """``loss(params, x, labels)`` of one config, params keyed by our parameter names."""
        raise NotImplementedError

    def _zeros(self) -> Params:
        return self.jax.tree_util.tree_map(self.jnp.zeros_like, self.params0)

    def run_per_step(self, steps: int) -> tuple[float, Params]:
        params, m, v = self.params0, self._zeros(), self._zeros()
        start = time.perf_counter()
        for s in range(steps):
            params, m, v, _ = self.step(params, m, v, self.jnp.float32(s + 1), self.hp, self.xs[s], self.ys[s])
        self.jax.block_until_ready(params)
        return time.perf_counter() - start, params

    def run_scan(self, steps: int) -> tuple[float, Params]:
        """Seconds of one ``lax.scan`` over ``steps`` steps (compiled ahead, once per length,
        and not timed) and the parameters it ends with."""
        args = (self.params0, self._zeros(), self._zeros(), self.xs[:steps], self.ys[:steps])
        if steps not in self._scans:
            self._scans[steps] = self.scan.lower(*args).compile()
        start = time.perf_counter()
        params, _ = self.jax.block_until_ready(self._scans[steps](*args))
        return time.perf_counter() - start, params


class MLPPeer(JaxPeer):
    """``lab_mlp``: images scaled (and centred) by the module's own input layer outside the
    step, linear layers with the activation between them, integer labels."""

    module_type = MLP

    def inputs(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
        like = next(module.parameters())
        return module.input(batch[0], like).numpy(), batch[1].numpy().astype(np.int32)

    def make_loss(self, module: nn.Module) -> Loss:
        act, n = _activation(module.activation), len(module.layers)

        def loss(p, x, y):
            h = x.reshape(x.shape[0], -1)
            for i in range(n - 1):
                h = act(_linear(h, p, f"layers.{i}"))
            return _cross_entropy(_linear(h, p, f"layers.{n - 1}"), y)
        return loss


class ConvPeer(JaxPeer):
    """``conv_pooling_family``: 3x3 convolutions (NCHW / OIHW, PyTorch's layouts) with TF's
    padding (``SAME``: the odd padding row at the bottom/right; ``VALID``: none), optional
    bias, the activation after every layer, global mean / max / squared-mean pooling, then
    ``x @ w + b`` (Sonnet's layout). Images scaled to [0, 1] (and centred) outside the step."""

    module_type = ConvPoolingNet

    def inputs(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
        if module.input.augmentation:
            raise NotImplementedError("ConvPeer covers tasks without augmentation only")
        like = next(module.parameters())
        return module.input(batch[0], like).numpy(), batch[1].numpy().astype(np.int32)

    def make_loss(self, module: nn.Module) -> Loss:
        import jax

        act = _activation(module.convs.activation)
        layers = [(f"convs.layers.{i}", conv.stride, conv.padding, conv.bias is not None)
                  for i, conv in enumerate(module.convs.layers)]
        pool_type = module.pool_type

        def loss(p, x, y):
            h = x
            for name, stride, padding, bias in layers:
                pads = ([same_padding(n, s) for n, s in zip(h.shape[-2:], stride)] if padding == "SAME"
                        else [(0, 0), (0, 0)])
                h = jax.lax.conv_general_dilated(h, p[f"{name}.weight"], stride, pads,
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                h = act(h + p[f"{name}.bias"][:, None, None] if bias else h)
            if pool_type == "mean":
                h = h.mean(axis=(-2, -1))
            elif pool_type == "max":
                h = h.max(axis=(-2, -1))
            else:
                h = (h * h).mean(axis=(-2, -1))
            return _cross_entropy(h @ p["linear.w"] + p["linear.b"], y)
        return loss


class CharRNNPeer(JaxPeer):
    """``char_rnn_language_model_family`` with the GRU core (Sonnet's GRU as
    :class:`taskset_lab.tasks.layers.SonnetCore` computes it: gates z, r, candidate from
    ``(r * h) @ uh``, ``h' = (1 - z) h + z cand``): token ids clamped to the vocabulary,
    embedding lookup, the input projection of all steps in one matmul, ``lax.scan`` of the
    cell over time from the zero or trainable initial state, the readout ``x @ w + b`` on all
    but the last step; mean cross-entropy against the next token."""

    module_type = RNNLanguageModel

    def inputs(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, np.ndarray]:
        tokens = batch[0].numpy().astype(np.int32)
        return tokens, tokens  # the targets are the tokens, shifted inside the loss

    def make_loss(self, module: nn.Module) -> Loss:
        import jax
        import jax.numpy as jnp

        if module.core.kind != "gru":
            raise NotImplementedError(f"CharRNNPeer covers the GRU core only, not {module.core.kind!r}")
        hidden, vocab, trainable_init, sig = (module.core.hidden, module.vocab_size, module.core.trainable_init,
                                              jax.nn.sigmoid)

        def loss(p, text, _targets):
            tok = jnp.minimum(text, vocab - 1)
            u_zr, uh = jnp.concatenate([p["core.uz"], p["core.ur"]], 1), p["core.uh"]

            def gru(h, x_t):
                xz, xr, xh = jnp.split(x_t, 3, axis=-1)
                hz, hr = jnp.split(h @ u_zr, 2, axis=-1)
                z, r = sig(xz + hz), sig(xr + hr)
                h = (1.0 - z) * h + z * jnp.tanh(xh + (r * h) @ uh)
                return h, h

            w_in = jnp.concatenate([p["core.wz"], p["core.wr"], p["core.wh"]], 1)
            b_in = jnp.concatenate([p["core.bz"], p["core.br"], p["core.bh"]])
            proj = p["embed.embeddings"][tok] @ w_in + b_in  # [B, T, 3H]
            if trainable_init:
                h0 = jnp.broadcast_to(p["core.init_h"], (tok.shape[0], hidden))
            else:
                h0 = jnp.zeros((tok.shape[0], hidden), proj.dtype)
            _, hs = jax.lax.scan(gru, h0, jnp.swapaxes(proj, 0, 1))  # hs [T, B, H]
            logits = hs[:-1] @ p["readout.w"] + p["readout.b"]  # [T-1, B, V]
            return _cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].T.reshape(-1))
        return loss


PEERS: tuple[type[JaxPeer], ...] = (MLPPeer, ConvPeer, CharRNNPeer)


def make_peer(task: Task, configs: Sequence[Mapping[str, float]], max_steps: int) -> JaxPeer:
    """The peer of ``task``'s module (NotImplementedError for modules without one)."""
    module_cls = type(task.init_module(0))
    for peer in PEERS:
        if issubclass(module_cls, peer.module_type):
            return peer(task, configs, max_steps)
    raise NotImplementedError(f"no JAX peer for {module_cls.__name__}")


def max_param_diff(task: Task, peer: JaxPeer, steps: int) -> float:
    """Largest |ours - JAX| over every parameter (matched by our parameter names) after
    ``steps`` steps of the population engine (adam4p, the peer's configs) and of the peer
    (per step): the check that the peer trains the same thing."""
    from taskset_lab.engine.population import Population

    pop = Population(task, ADAM4P, peer.configs, steps, eval_batches=1)
    state = pop.evaluate(pop.init())[1]
    for _ in range(steps):
        state = pop.step(state)
    _, params = peer.run_per_step(steps)
    if set(params) != set(state.params):
        raise AssertionError(f"peer parameters {sorted(params)} != ours {sorted(state.params)}")
    return max(float(np.abs(np.asarray(value) - state.params[name].numpy()).max())
               for name, value in params.items())


def make_pes_peer(task: Task, thetas: np.ndarray, lr: float, max_steps: int) -> "Any":
    """The JAX peer of one PES truncation (``bench_meta.py``): K members of ``small_fc_lopt``
    (``taskset_lab.optim.learned``: same features, normalization, MLP and step), member k with
    the weights ``thetas[k]``, on ``task``'s MLP (``lab_mlp``) from ``task.init_module(0)``'s
    parameters and the same batches, stepped by ``jit(vmap(step))`` over the members, float32.
    Returns an object with ``run(steps) -> (seconds, params)``. No divergence freeze.

    Only jax is needed (not optax)."""
    import jax
    import jax.numpy as jnp

    from taskset_lab.optim.learned import SMALL_FC_LOPT, TIMESCALES

    fam = SMALL_FC_LOPT
    module = task.init_module(0)
    if not isinstance(module, MLP):
        raise NotImplementedError("the PES peer covers lab_mlp's MLP only")
    k = thetas.shape[0]
    loss = MLPPeer.make_loss(MLPPeer.__new__(MLPPeer), module)
    xs, ys = zip(*(MLPPeer.inputs(None, module, task.data.batch("train", s)) for s in range(max_steps)))
    xs, ys = jnp.asarray(np.stack(xs)), jnp.asarray(np.stack(ys))
    params0 = {n: jnp.broadcast_to(p.detach().numpy(), (k,) + tuple(p.shape)) for n, p in module.named_parameters()}
    tau = jnp.asarray(TIMESCALES, dtype=jnp.float32)
    sizes = fam.layer_sizes
    mom, rms, fac = (jnp.asarray(d, dtype=jnp.float32) for d in (fam.mom_decays, fam.rms_decays, fam.fac_decays))

    def mlp(x, theta):
        off = 0
        for i, (a, b) in enumerate(sizes):
            w = theta[off:off + a * b].reshape(a, b)
            bias = theta[off + a * b:off + a * b + b]
            off += a * b + b
            x = x @ w + bias
            if i < len(sizes) - 1:
                x = jax.nn.relu(x)
        return x

    def update(p, g, st, t, theta):
        m = mom * st["m"] + (1 - mom) * g[..., None]
        v = rms * st["v"] + (1 - rms) * (g * g)[..., None]
        rsqrt = jax.lax.rsqrt(v + 1e-6)
        g2 = (g * g + 1e-30)[..., None]
        if p.ndim >= 2:
            row = fac * st["r"] + (1 - fac) * g2.mean(axis=-2, keepdims=True)
            col = fac * st["c"] + (1 - fac) * g2.mean(axis=-3, keepdims=True)
            rf = jax.lax.rsqrt(row / (row.mean(axis=-3, keepdims=True) + 1e-9))
            cf = jax.lax.rsqrt(col)
            fac_g = g[..., None] * rf * cf
            extra = [row, col, jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(col + 1e-8), m * rf * cf]
        else:
            row = col = fac * st["r"] + (1 - fac) * g2
            fac_g = g[..., None] * jax.lax.rsqrt(row)
            extra = [row, row, jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(row + 1e-8), m * (row + 1e-6) ** -0.5]
        feats = jnp.concatenate([g[..., None], p[..., None], m, v, m * rsqrt, rsqrt, fac_g] + extra, axis=-1)
        axes = tuple(range(feats.ndim - 1))
        x = feats * jax.lax.rsqrt(1e-5 + jnp.mean(feats * feats, axis=axes, keepdims=True))
        emb = jnp.broadcast_to(jnp.tanh((t - 1.0) / tau - 1.0), p.shape + (len(TIMESCALES),))
        out = mlp(jnp.concatenate([x, emb], axis=-1), theta)
        new_p = p - out[..., 0] * jnp.exp(fam.exp_mult * out[..., 1]) * lr
        return new_p, {"m": m, "v": v, "r": row, "c": col}

    def step(params, state, theta, t, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        new_params, new_state = {}, {}
        for n in params:
            new_params[n], new_state[n] = update(params[n], grads[n], state[n], t, theta)
        return new_params, new_state, value

    vstep = jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None, None, None)))
    thetas_j = jnp.asarray(thetas, dtype=jnp.float32)

    def zeros_state():
        return {n: {"m": jnp.zeros(p.shape + (3,)), "v": jnp.zeros(p.shape + (1,)), "r": jnp.zeros(p.shape + (3,)),
                    "c": jnp.zeros(p.shape + (3,))} for n, p in params0.items()}

    class PESPeer:
        def run(self, steps: int) -> tuple[float, Params]:
            params, state = params0, zeros_state()
            start = time.perf_counter()
            for s in range(steps):
                params, state, _ = vstep(params, state, thetas_j, jnp.float32(s + 1), xs[s], ys[s])
            jax.block_until_ready(params)
            return time.perf_counter() - start, params

    return PESPeer()
