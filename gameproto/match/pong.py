"""
The Pong engine of specs/match.md, with the rules of DESIGN.md §4 "match".

Pure and deterministic: no I/O, no reactor, no clock.  The caller steps the game once per tick
and the time step C{dt} is part of L{PongRules}, so game time is the number of steps times
C{dt}.

The field is the unit square with y=0 at the top.  The host plays the left paddle, the
challenger the right one.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Literal, TypedDict

import attrs

# The field is the unit square: the ball is served from its centre and the paddles start there.
_CENTRE = 0.5

# Every position on the wire is rounded to this many decimals.
_POSITION_DECIMALS = 5


class Side(enum.Enum):
    """A side of the field, and the player who defends it."""

    LEFT = "left"
    """The host's paddle, at x=0.01."""

    RIGHT = "right"
    """The challenger's paddle, at x=0.99."""

    @property
    def opponent(self) -> Side:
        return Side.RIGHT if self is Side.LEFT else Side.LEFT


class PaddleCommand(enum.Enum):
    """A paddle command, valued by its wire name."""

    UP = "up"
    DOWN = "down"
    FAST_UP = "fup"
    FAST_DOWN = "fdown"

    @classmethod
    def parse(cls, wire: str) -> PaddleCommand | None:
        """
        @return: the command named C{wire} on the wire, or L{None} if C{wire} names none (the
            protocol answers that with its own error).
        """
        try:
            return cls(wire)
        except ValueError:
            return None

    @property
    def speed_delta(self) -> float:
        """What the command adds to the paddle's speed (y grows downwards: up is negative)."""
        return _SPEED_DELTAS[self]


_SPEED_DELTAS = {
    PaddleCommand.UP: -0.1,
    PaddleCommand.DOWN: +0.1,
    PaddleCommand.FAST_UP: -0.2,
    PaddleCommand.FAST_DOWN: +0.2,
}


@attrs.frozen
class PongRules:
    """Every constant of a Pong match; the defaults are DESIGN.md's."""

    ball_radius: float = 0.02
    paddle_height: float = 0.13
    paddle_width: float = 0.02
    # A paddle's centre stays within these, so the paddle (half-height 0.065) stays on the field.
    paddle_top_margin: float = 0.065
    paddle_bottom_margin: float = 0.935
    # A paddle hits the ball when the ball's centre is past the paddle's hit x and within
    # hit_half_height (half the paddle plus the ball's radius) of the paddle's centre.
    left_hit_x: float = 0.03
    right_hit_x: float = 0.97
    hit_half_height: float = 0.085
    serve_vx: float = 0.3
    serve_vy: float = 0.55
    queue_length: int = 10
    winning_score: int = 5
    time_limit: float = 300.0
    dt: float = attrs.field(default=0.01, validator=attrs.validators.gt(0))


class InitFrame(TypedDict):
    message_type: Literal["init"]
    ball_radius: float
    paddle_height: float
    paddle_width: float


class StatusFrame(TypedDict):
    message_type: Literal["status"]
    has_bounced: bool
    left_paddle_margin_reached: bool
    right_paddle_margin_reached: bool
    left_score: int
    right_score: int
    left_paddle_y: float
    right_paddle_y: float
    ball_x: float
    ball_y: float
    match_time: int
    sudden_death: bool


@attrs.define
class Ball:
    """The ball's centre and velocity, in field units and field units per second."""

    x: float
    y: float
    vx: float
    vy: float


@attrs.define
class Paddle:
    """One paddle: its vertical centre, its speed and the commands it has yet to consume."""

    commands: deque[PaddleCommand]
    y: float = _CENTRE
    speed: float = 0.0
    margin_reached: bool = False
    """Whether the paddle is held at the top or bottom margin."""


@attrs.define
class PongGame:
    """
    A match in progress.  Queue the players' commands with L{queue_command} at any time and
    call L{step} once per tick until L{finished}.
    """

    rules: PongRules = attrs.field(factory=PongRules)
    paddles: dict[Side, Paddle] = attrs.field(init=False)
    ball: Ball = attrs.field(init=False)
    scores: dict[Side, int] = attrs.field(init=False, factory=lambda: dict.fromkeys(Side, 0))
    has_bounced: bool = attrs.field(init=False, default=False)
    """
    Whether the ball bounced off a paddle or a wall during the last tick, including a tick that
    ended in a goal; L{False} before the first tick.
    """
    sudden_death: bool = attrs.field(init=False, default=False)
    """
    Set when the time limit is reached with the scores level, and kept, so the status of the
    goal that decides the match still says the match went to sudden death.
    """
    winner: Side | None = attrs.field(init=False, default=None)
    # Counting ticks rather than summing dt keeps game time exact: 30000 additions of 0.01 fall
    # short of 300 s, which would delay the time limit by a tick.
    _ticks: int = attrs.field(init=False, default=0)

    @paddles.default
    def _paddles_at_rest(self) -> dict[Side, Paddle]:
        return {
            side: Paddle(commands=deque(maxlen=self.rules.queue_length)) for side in Side
        }

    @ball.default
    def _first_serve(self) -> Ball:
        return self._serve(toward=Side.RIGHT)

    @property
    def finished(self) -> bool:
        return self.winner is not None

    @property
    def game_time(self) -> float:
        """Seconds of game time played: one C{dt} per step."""
        return self._ticks * self.rules.dt

    def queue_command(self, side: Side, command: PaddleCommand) -> None:
        """
        Queue C{command} for C{side}'s paddle, which consumes one per tick.  A full queue drops
        its oldest command, so a flooding client steers with its latest intentions.
        """
        self.paddles[side].commands.append(command)

    def step(self) -> StatusFrame:
        """
        Play one tick: commands, paddles, ball, score, in that order.

        @return: the status frame of the tick.
        @raise RuntimeError: if the match is already finished.
        """
        if self.finished:
            raise RuntimeError("the match is finished")
        self._ticks += 1
        for paddle in self.paddles.values():
            self._move_paddle(paddle)
        self._move_ball()
        self._score()
        return self.status()

    def status(self) -> StatusFrame:
        """The status frame of the last tick."""
        left, right = self.paddles[Side.LEFT], self.paddles[Side.RIGHT]
        return {
            "message_type": "status",
            "has_bounced": self.has_bounced,
            "left_paddle_margin_reached": left.margin_reached,
            "right_paddle_margin_reached": right.margin_reached,
            "left_score": self.scores[Side.LEFT],
            "right_score": self.scores[Side.RIGHT],
            "left_paddle_y": round(left.y, _POSITION_DECIMALS),
            "right_paddle_y": round(right.y, _POSITION_DECIMALS),
            "ball_x": round(self.ball.x, _POSITION_DECIMALS),
            "ball_y": round(self.ball.y, _POSITION_DECIMALS),
            "match_time": int(self.game_time),
            "sudden_death": self.sudden_death,
        }

    def init_frame(self) -> InitFrame:
        """The frame that tells clients the sizes they draw the game with."""
        return {
            "message_type": "init",
            "ball_radius": self.rules.ball_radius,
            "paddle_height": self.rules.paddle_height,
            "paddle_width": self.rules.paddle_width,
        }

    def _serve(self, toward: Side) -> Ball:
        vx = self.rules.serve_vx if toward is Side.RIGHT else -self.rules.serve_vx
        return Ball(x=_CENTRE, y=_CENTRE, vx=vx, vy=self.rules.serve_vy)

    def _move_paddle(self, paddle: Paddle) -> None:
        rules = self.rules
        if paddle.commands:
            # Consecutive commands accumulate: holding a key accelerates the paddle.
            paddle.speed += paddle.commands.popleft().speed_delta
        else:
            paddle.speed = 0.0
        y = paddle.y + paddle.speed * rules.dt
        paddle.margin_reached = not rules.paddle_top_margin < y < rules.paddle_bottom_margin
        if paddle.margin_reached:
            # A held paddle has no speed, so it leaves the margin as soon as it is steered away
            # and lends the ball no spin.
            paddle.y = min(max(y, rules.paddle_top_margin), rules.paddle_bottom_margin)
            paddle.speed = 0.0
        else:
            paddle.y = y

    def _move_ball(self) -> None:
        rules, ball = self.rules, self.ball
        ball.x += ball.vx * rules.dt
        ball.y += ball.vy * rules.dt
        # Only the paddle the ball is heading for can hit it: once hit, the ball heads away and
        # cannot be hit again while it is still within reach of the same paddle.
        if ball.vx > 0:
            side, within_reach = Side.RIGHT, ball.x >= rules.right_hit_x
        else:
            side, within_reach = Side.LEFT, ball.x <= rules.left_hit_x
        paddle = self.paddles[side]
        paddle_hit = within_reach and abs(ball.y - paddle.y) <= rules.hit_half_height
        if paddle_hit:
            # Off-centre hits and a moving paddle give the ball its angle.
            ball.vx = -ball.vx
            ball.vy = (ball.y - paddle.y) + paddle.speed
        # Testing the direction as well keeps a ball that is still touching a wall after a
        # bounce from bouncing back into it.  A paddle hit in a corner may aim the ball at the
        # wall it touches: the wall then sends it back in the same tick.
        wall_hit = (ball.vy < 0 and ball.y - rules.ball_radius <= 0) or (
            ball.vy > 0 and ball.y + rules.ball_radius >= 1
        )
        if wall_hit:
            ball.vy = -ball.vy
        self.has_bounced = paddle_hit or wall_hit

    def _score(self) -> None:
        if self.ball.x < 0:
            conceded = Side.LEFT
        elif self.ball.x > 1:
            conceded = Side.RIGHT
        else:
            conceded = None
        if conceded is not None:
            self.scores[conceded.opponent] += 1
            self.ball = self._serve(toward=conceded)

        left, right = self.scores[Side.LEFT], self.scores[Side.RIGHT]
        time_up = self.game_time >= self.rules.time_limit
        if left == right:
            # Level at the time limit: play on until the next goal.
            self.sudden_death = time_up
            return
        leader = Side.LEFT if left > right else Side.RIGHT
        # After the time limit any lead wins, which also makes the first goal of sudden death
        # the winning one.
        if time_up or self.scores[leader] >= self.rules.winning_score:
            self.winner = leader
