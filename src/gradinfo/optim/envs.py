"""Seeded environments for the policy-gradient methods: an exact linear-quadratic regulator and CartPole.

Both expose ``rollout(act, gen) -> Trajectory``: one episode from a seeded initial state, the policy's
``act(state [n]) -> action`` choosing each action. They carry their ``discount`` and ``horizon`` (the
episode is cut after ``horizon`` steps).

:class:`LQR` is the discounted regulator ``s' = A s + B a``, reward ``-(s^T Q s + a^T R a)``,
``s_0 ~ N(0, I)``, under the Gaussian linear policy ``a = K s + sigma xi`` (``xi ~ N(0, I)``). Its
expected return is exact, so optimality gaps are measured without noise. With ``M = A + B K``,
``C = Q + K^T R K``, discount ``c``, and ``P_K`` the solution of the Lyapunov equation
``P_K = C + c M^T P_K M`` (finite when ``sqrt(c) M`` is stable),

    J(K) = -[tr(P_K) + c / (1 - c) sigma^2 tr(P_K B B^T) + sigma^2 tr(R) / (1 - c)],

and the ``H``-step return the sampled episodes estimate is ``-sum_{t<H} c^t [tr(C S_t) + sigma^2 tr(R)]``
with ``S_0 = I``, ``S_{t+1} = M S_t M^T + sigma^2 B B^T``. The optimal gain ``K*`` comes from the discounted
Riccati equation ``P = Q + c A^T P A - c^2 A^T P B (R + c B^T P B)^{-1} B^T P A``,
``K* = -c (R + c B^T P B)^{-1} B^T P A``; ``P_{K*} = P`` is the least ``P_K`` in the positive semi-definite
order, so ``K*`` maximises ``J`` for every ``sigma`` and ``J(K*) - J(K) >= 0`` is the exact optimality gap.

:class:`CartPole` adapts gymnasium's ``CartPole-v1`` (gymnasium is imported when the adapter is built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor

from gradinfo.core.validate import fraction, positive, positive_int

RICCATI_ITERS = 10_000
"""At most this many fixed-point iterations of the Riccati equation (it converges geometrically)."""


@dataclass(frozen=True)
class Trajectory:
    """One episode.

    Attributes:
        states: ``[H, n]`` the states the actions were taken in.
        actions: ``[H, k]`` continuous or ``[H]`` discrete actions.
        rewards: ``[H]`` the reward after each action.
    """

    states: Tensor
    actions: Tensor
    rewards: Tensor


class Env(Protocol):
    """What the policy-gradient methods need of an environment."""

    discount: float
    horizon: int

    def rollout(self, act: Callable[[Tensor], Tensor], gen: torch.Generator) -> Trajectory:
        """One episode of at most ``horizon`` steps; ``gen`` seeds the initial state and the dynamics."""
        ...


def _matrix(values: list[list[float]]) -> Callable[[], Tensor]:
    return lambda: torch.tensor(values, dtype=torch.float64)


@dataclass(frozen=True)
class LQR:
    """A discounted linear-quadratic regulator with exact expected returns (see the module docstring).

    Attributes:
        a: ``[n, n]`` dynamics.
        b: ``[n, k]`` control matrix.
        q: ``[n, n]`` state cost, symmetric positive semi-definite.
        r: ``[k, k]`` action cost, symmetric positive definite.
        discount: ``c`` in ``(0, 1)``.
        horizon: steps per sampled episode ``H`` (``c^H`` is the relative weight the cut drops).

    Raises:
        TypeError: a matrix is not a tensor, or a number of the wrong type.
        ValueError: shapes that disagree, ``discount`` outside ``(0, 1)``, ``horizon < 1``.
    """

    a: Tensor = field(default_factory=_matrix([[0.9, 0.3], [0.0, 0.9]]))
    b: Tensor = field(default_factory=_matrix([[1.0, 0.0], [0.0, 1.0]]))
    q: Tensor = field(default_factory=_matrix([[1.0, 0.0], [0.0, 1.0]]))
    r: Tensor = field(default_factory=_matrix([[0.1, 0.0], [0.0, 0.1]]))
    discount: float = 0.8
    horizon: int = 30

    def __post_init__(self) -> None:
        for name in ("a", "b", "q", "r"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.dim() != 2:
                what = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise TypeError(f"{name} must be a 2-D tensor, got {what}")
            object.__setattr__(self, name, value.to(torch.float64))
        n, k = self.b.shape
        if self.a.shape != (n, n) or self.q.shape != (n, n) or self.r.shape != (k, k):
            raise ValueError(
                f"LQR shapes disagree: a {tuple(self.a.shape)}, b {tuple(self.b.shape)}, "
                f"q {tuple(self.q.shape)}, r {tuple(self.r.shape)}; expected a, q [n, n], b [n, k], r [k, k]"
            )
        fraction("discount", self.discount)
        positive_int("horizon", self.horizon)

    @property
    def state_dim(self) -> int:
        return self.b.shape[0]

    @property
    def action_dim(self) -> int:
        return self.b.shape[1]

    def rollout(self, act: Callable[[Tensor], Tensor], gen: torch.Generator) -> Trajectory:
        """One ``horizon``-step episode from ``s_0 ~ N(0, I)`` drawn with ``gen``; actions ``[H, k]``."""
        s = torch.randn(self.state_dim, generator=gen, dtype=torch.float64)  # [n]
        states, actions = [], []
        for _ in range(self.horizon):
            a = act(s).reshape(self.action_dim).to(torch.float64)  # [k]
            states.append(s)
            actions.append(a)
            s = self.a @ s + self.b @ a
        xs, us = torch.stack(states), torch.stack(actions)  # [H, n], [H, k]
        rewards = -((xs @ self.q) * xs).sum(1) - ((us @ self.r) * us).sum(1)  # [H]
        return Trajectory(xs, us, rewards)

    def _check_gain(self, gain: Tensor, sigma: float) -> None:
        if not isinstance(gain, Tensor) or gain.shape != (self.action_dim, self.state_dim):
            what = tuple(gain.shape) if isinstance(gain, Tensor) else type(gain).__name__
            raise ValueError(f"gain must be a [{self.action_dim}, {self.state_dim}] tensor K, got {what}")
        positive("sigma", sigma, allow_zero=True)

    def expected_return(self, gain: Tensor, sigma: float, *, horizon: int | None = None) -> Tensor:
        """Exact expected discounted return of ``a = K s + sigma xi`` (differentiable in ``gain``).

        Args:
            gain: ``[k, n]`` the policy's gain ``K``.
            sigma: the policy's noise scale, >= 0.
            horizon: None for the infinite-horizon return ``J(K)``; an int ``H`` for the ``H``-step return
                that episodes of this length estimate without bias.

        Returns:
            A scalar float64 tensor; ``-inf`` when ``horizon`` is None and ``sqrt(c)(A + B K)`` is unstable.

        Raises:
            ValueError: ``gain`` misshapen, ``sigma < 0`` or ``horizon < 1``.
        """
        self._check_gain(gain, sigma)
        k = gain.to(torch.float64)  # [k, n]
        m = self.a + self.b @ k  # [n, n]
        cost = self.q + k.T @ self.r @ k  # [n, n]
        noise = sigma**2 * self.b @ self.b.T  # [n, n]
        c, n = self.discount, self.state_dim
        action_noise = sigma**2 * torch.trace(self.r)
        if horizon is not None:
            positive_int("horizon", horizon)
            cov = torch.eye(n, dtype=torch.float64)  # [n, n]
            total = k.new_zeros(())
            for t in range(horizon):
                total = total + c**t * (torch.trace(cost @ cov) + action_noise)
                cov = m @ cov @ m.T + noise
            return -total
        if torch.linalg.eigvals(m.detach()).abs().max() * c**0.5 >= 1:
            return k.new_tensor(-float("inf"))
        eye = torch.eye(n * n, dtype=torch.float64)  # [n^2, n^2]
        # vec(M^T P M) = (M^T kron M^T) vec(P) for row-major vec; solve (I - c M^T kron M^T) vec(P) = vec(C).
        p = torch.linalg.solve(eye - c * torch.kron(m.T, m.T), cost.reshape(-1)).reshape(n, n)  # [n, n]
        return -(torch.trace(p) + c / (1 - c) * torch.trace(p @ noise) + action_noise / (1 - c))

    def optimal_gain(self) -> Tensor:
        """``K*`` ``[k, n]`` from the discounted Riccati equation (fixed-point iteration to 1e-12)."""
        return self._optimal_gain.clone()

    @cached_property
    def _optimal_gain(self) -> Tensor:
        c, p = self.discount, self.q.clone()  # [n, n]
        for _ in range(RICCATI_ITERS):
            gain = -c * torch.linalg.solve(
                self.r + c * self.b.T @ p @ self.b, self.b.T @ p @ self.a
            )  # [k, n]
            m = self.a + self.b @ gain  # [n, n]
            new = self.q + gain.T @ self.r @ gain + c * m.T @ p @ m  # [n, n]
            if (new - p).abs().max() <= 1e-12 * new.abs().max():
                return -c * torch.linalg.solve(self.r + c * self.b.T @ new @ self.b, self.b.T @ new @ self.a)
            p = new
        raise RuntimeError(
            f"the Riccati iteration did not converge in {RICCATI_ITERS} steps (is (A, B) stabilisable?)"
        )

    def optimality_gap(self, gain: Tensor, sigma: float) -> float:
        """Exact ``J(K*) - J(K) >= 0`` of the infinite-horizon return (``inf`` for a destabilising ``K``)."""
        self._check_gain(gain, sigma)
        with torch.no_grad():
            best = self.expected_return(self.optimal_gain(), sigma)
            return float(best - self.expected_return(gain.detach(), sigma))


class CartPole:
    """gymnasium's ``CartPole-v1`` as an :class:`Env`: float64 states ``[4]``, actions ``{0, 1}``, reward 1.

    Each episode resets gymnasium's environment with a seed drawn from ``gen``, so episodes are reproducible
    from the generator's seed. The episode ends when the pole falls or after ``horizon`` steps.

    Args:
        horizon: at most this many steps per episode (CartPole-v1 itself stops at 500).
        discount: ``c`` in ``(0, 1]``.

    Raises:
        TypeError / ValueError: a bad ``horizon`` or ``discount``.
        ImportError: gymnasium is not installed.
    """

    def __init__(self, horizon: int = 200, discount: float = 0.99) -> None:
        positive_int("horizon", horizon)
        if fraction("discount", discount, closed=True) == 0:
            raise ValueError(f"discount must lie in (0, 1], got {discount!r}")
        try:
            import gymnasium
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("CartPole needs gymnasium: pip install gymnasium") from err
        self.horizon, self.discount = horizon, float(discount)
        self._env = gymnasium.make("CartPole-v1")

    def rollout(self, act: Callable[[Tensor], Tensor], gen: torch.Generator) -> Trajectory:
        """One episode; actions ``[H]`` (int64), states ``[H, 4]``, rewards ``[H]``."""
        seed = int(torch.randint(2**31 - 1, (), generator=gen))
        obs, _ = self._env.reset(seed=seed)
        states, actions, rewards = [], [], []
        for _ in range(self.horizon):
            s = torch.as_tensor(obs, dtype=torch.float64)  # [4]
            a = int(act(s))
            obs, reward, terminated, truncated, _ = self._env.step(a)
            states.append(s)
            actions.append(a)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        return Trajectory(
            torch.stack(states), torch.tensor(actions), torch.tensor(rewards, dtype=torch.float64)
        )
