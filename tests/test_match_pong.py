"""
Tests for L{gameproto.match.pong}, the Pong engine.  Expected values are worked out from the
rules of DESIGN.md §4 "match", written here as literals, not read back from the engine.
"""

from twisted.trial.unittest import SynchronousTestCase

from gameproto.match.pong import Ball, PaddleCommand, PongGame, PongRules, Side

DT = 0.01
SERVE_VX = 0.3
SERVE_VY = 0.55
TOP_MARGIN = 0.065
BOTTOM_MARGIN = 0.935

# A serve that never moves: the ball waits at the centre, so time passes with no goal.
STILL_BALL = PongRules(serve_vx=0.0, serve_vy=0.0)

STATUS_KEYS = {
    "message_type",
    "has_bounced",
    "left_paddle_margin_reached",
    "right_paddle_margin_reached",
    "left_score",
    "right_score",
    "left_paddle_y",
    "right_paddle_y",
    "ball_x",
    "ball_y",
    "match_time",
    "sudden_death",
}


def game_with_ball(
    x: float, y: float, vx: float, vy: float, rules: PongRules = PongRules()
) -> PongGame:
    game = PongGame(rules)
    game.ball = Ball(x=x, y=y, vx=vx, vy=vy)
    return game


def score_goal(game: PongGame, scorer: Side) -> None:
    """
    Step C{game} once with the ball about to cross the goal line of C{scorer}'s opponent, far
    from the defending paddle.
    """
    defender = game.paddles[scorer.opponent]
    y = 0.9 if defender.y < 0.5 else 0.1
    if scorer is Side.LEFT:
        game.ball = Ball(x=1.0, y=y, vx=SERVE_VX, vy=0.0)
    else:
        game.ball = Ball(x=0.0, y=y, vx=-SERVE_VX, vy=0.0)
    game.step()


def steps(game: PongGame, count: int) -> None:
    for _ in range(count):
        game.step()


class PaddleCommandTests(SynchronousTestCase):
    def test_parse_wire_names(self) -> None:
        """
        The four wire commands parse to their commands.
        """
        self.assertIs(PaddleCommand.parse("up"), PaddleCommand.UP)
        self.assertIs(PaddleCommand.parse("down"), PaddleCommand.DOWN)
        self.assertIs(PaddleCommand.parse("fup"), PaddleCommand.FAST_UP)
        self.assertIs(PaddleCommand.parse("fdown"), PaddleCommand.FAST_DOWN)

    def test_parse_unknown(self) -> None:
        """
        Anything else, other commands of the protocol and other spellings included, parses to
        None.
        """
        for wire in ["", "UP", "left", "ready", "start_match", "FAST_UP", " up"]:
            self.assertIsNone(PaddleCommand.parse(wire), wire)

    def test_speed_deltas(self) -> None:
        """
        up, down, fup and fdown add −0.1, +0.1, −0.2 and +0.2 to the paddle's speed (y grows
        downwards).
        """
        self.assertEqual(PaddleCommand.UP.speed_delta, -0.1)
        self.assertEqual(PaddleCommand.DOWN.speed_delta, 0.1)
        self.assertEqual(PaddleCommand.FAST_UP.speed_delta, -0.2)
        self.assertEqual(PaddleCommand.FAST_DOWN.speed_delta, 0.2)


class SideTests(SynchronousTestCase):
    def test_opponent(self) -> None:
        """
        Each side's opponent is the other side.
        """
        self.assertIs(Side.LEFT.opponent, Side.RIGHT)
        self.assertIs(Side.RIGHT.opponent, Side.LEFT)


class RulesTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        The default rules are DESIGN.md's constants.
        """
        rules = PongRules()
        self.assertEqual(
            (rules.ball_radius, rules.paddle_height, rules.paddle_width),
            (0.02, 0.13, 0.02),
        )
        self.assertEqual((rules.paddle_top_margin, rules.paddle_bottom_margin), (0.065, 0.935))
        self.assertEqual(
            (rules.left_hit_x, rules.right_hit_x, rules.hit_half_height), (0.03, 0.97, 0.085)
        )
        self.assertEqual((rules.serve_vx, rules.serve_vy), (0.3, 0.55))
        self.assertEqual((rules.queue_length, rules.winning_score), (10, 5))
        self.assertEqual((rules.time_limit, rules.dt), (300.0, 0.01))

    def test_dt_must_be_positive(self) -> None:
        """
        A time step of zero or less is refused: game time would never advance.
        """
        self.assertRaises(ValueError, PongRules, dt=0.0)
        self.assertRaises(ValueError, PongRules, dt=-0.01)


class StartTests(SynchronousTestCase):
    def test_init_frame(self) -> None:
        """
        The init frame gives the ball radius, paddle height and paddle width.
        """
        self.assertEqual(
            PongGame().init_frame(),
            {
                "message_type": "init",
                "ball_radius": 0.02,
                "paddle_height": 0.13,
                "paddle_width": 0.02,
            },
        )

    def test_initial_status(self) -> None:
        """
        Before the first tick: paddles and ball at the centre, no score, no time, nothing
        bounced, no margin reached, no sudden death.
        """
        self.assertEqual(
            PongGame().status(),
            {
                "message_type": "status",
                "has_bounced": False,
                "left_paddle_margin_reached": False,
                "right_paddle_margin_reached": False,
                "left_score": 0,
                "right_score": 0,
                "left_paddle_y": 0.5,
                "right_paddle_y": 0.5,
                "ball_x": 0.5,
                "ball_y": 0.5,
                "match_time": 0,
                "sudden_death": False,
            },
        )

    def test_paddles_start_at_rest(self) -> None:
        """
        Both paddles start at y = 0.5 with speed 0.
        """
        game = PongGame()
        for side in Side:
            self.assertEqual((game.paddles[side].y, game.paddles[side].speed), (0.5, 0.0))

    def test_first_serve_toward_challenger(self) -> None:
        """
        The first serve goes toward the challenger (right, +x) and down (+y) at (0.3, 0.55):
        after one tick the ball is at (0.5 + 0.3·dt, 0.5 + 0.55·dt).
        """
        status = PongGame().step()
        self.assertAlmostEqual(status["ball_x"], 0.5 + SERVE_VX * DT)
        self.assertAlmostEqual(status["ball_y"], 0.5 + SERVE_VY * DT)

    def test_step_returns_status(self) -> None:
        """
        step returns the status frame of the tick it played, with exactly the DESIGN.md fields.
        """
        game = PongGame()
        status = game.step()
        self.assertEqual(set(status), STATUS_KEYS)
        self.assertEqual(status, game.status())

    def test_dt_is_injected(self) -> None:
        """
        The ball moves by its velocity times the rules' dt in each step.
        """
        game = PongGame(PongRules(dt=0.05))
        status = game.step()
        self.assertAlmostEqual(status["ball_x"], 0.5 + SERVE_VX * 0.05)
        self.assertAlmostEqual(status["ball_y"], 0.5 + SERVE_VY * 0.05)


class PaddleTests(SynchronousTestCase):
    def test_one_command(self) -> None:
        """
        One up command gives the paddle speed −0.1, which moves it by −0.1·dt in that tick;
        the other paddle stays put.
        """
        game = PongGame()
        game.queue_command(Side.LEFT, PaddleCommand.UP)
        status = game.step()
        self.assertAlmostEqual(game.paddles[Side.LEFT].speed, -0.1)
        self.assertAlmostEqual(status["left_paddle_y"], 0.5 - 0.1 * DT)
        self.assertEqual(status["right_paddle_y"], 0.5)

    def test_speed_accumulates(self) -> None:
        """
        Consecutive commands add up, one per tick: fdown, fdown, up give speeds 0.2, 0.4, 0.3,
        and the paddle moves by each speed times dt.
        """
        game = PongGame()
        for command in [PaddleCommand.FAST_DOWN, PaddleCommand.FAST_DOWN, PaddleCommand.UP]:
            game.queue_command(Side.RIGHT, command)
        y = 0.5
        for speed in [0.2, 0.4, 0.3]:
            status = game.step()
            y += speed * DT
            self.assertAlmostEqual(game.paddles[Side.RIGHT].speed, speed)
            self.assertAlmostEqual(status["right_paddle_y"], y)

    def test_speed_resets_without_command(self) -> None:
        """
        A tick without a command sets the speed to 0: the paddle stops where it is, and the
        next command starts from 0 again.
        """
        game = PongGame()
        game.queue_command(Side.LEFT, PaddleCommand.DOWN)
        game.queue_command(Side.LEFT, PaddleCommand.DOWN)
        steps(game, 2)
        moved_to = game.paddles[Side.LEFT].y
        game.step()
        self.assertEqual(game.paddles[Side.LEFT].speed, 0.0)
        self.assertEqual(game.paddles[Side.LEFT].y, moved_to)
        game.queue_command(Side.LEFT, PaddleCommand.DOWN)
        game.step()
        self.assertAlmostEqual(game.paddles[Side.LEFT].speed, 0.1)
        self.assertAlmostEqual(game.paddles[Side.LEFT].y, moved_to + 0.1 * DT)

    def test_queue_keeps_newest_ten(self) -> None:
        """
        The queue holds ten commands: an eleventh drops the oldest.  Queued fdown then ten ups,
        the paddle only ever goes up, with speeds −0.1 … −1.0, and stops on the twelfth tick.
        """
        game = PongGame()
        game.queue_command(Side.LEFT, PaddleCommand.FAST_DOWN)
        for _ in range(10):
            game.queue_command(Side.LEFT, PaddleCommand.UP)
        y = 0.5
        for tick in range(1, 11):
            game.step()
            y -= 0.1 * tick * DT
            self.assertAlmostEqual(game.paddles[Side.LEFT].speed, -0.1 * tick)
            self.assertAlmostEqual(game.paddles[Side.LEFT].y, y)
        game.step()
        self.assertEqual(game.paddles[Side.LEFT].speed, 0.0)
        self.assertAlmostEqual(game.paddles[Side.LEFT].y, y)

    def test_queues_are_per_paddle(self) -> None:
        """
        Each paddle consumes its own queue: commands for one never move the other.
        """
        game = PongGame()
        game.queue_command(Side.LEFT, PaddleCommand.FAST_UP)
        game.queue_command(Side.RIGHT, PaddleCommand.DOWN)
        status = game.step()
        self.assertAlmostEqual(status["left_paddle_y"], 0.5 - 0.2 * DT)
        self.assertAlmostEqual(status["right_paddle_y"], 0.5 + 0.1 * DT)

    def test_clamped_at_top(self) -> None:
        """
        A paddle that would pass y = 0.065 is held there with speed 0 and its margin flag set.
        """
        game = PongGame()
        game.paddles[Side.LEFT].y = 0.066
        game.queue_command(Side.LEFT, PaddleCommand.FAST_UP)  # to 0.066 − 0.002
        status = game.step()
        self.assertEqual(status["left_paddle_y"], TOP_MARGIN)
        self.assertEqual(game.paddles[Side.LEFT].speed, 0.0)
        self.assertTrue(status["left_paddle_margin_reached"])
        self.assertFalse(status["right_paddle_margin_reached"])

    def test_clamped_at_bottom(self) -> None:
        """
        A paddle that would pass y = 0.935 is held there with speed 0 and its margin flag set.
        """
        game = PongGame()
        game.paddles[Side.RIGHT].y = 0.934
        game.queue_command(Side.RIGHT, PaddleCommand.DOWN)  # to 0.934 + 0.001
        game.queue_command(Side.RIGHT, PaddleCommand.DOWN)
        status = game.step()
        self.assertEqual(status["right_paddle_y"], BOTTOM_MARGIN)
        self.assertTrue(status["right_paddle_margin_reached"])
        status = game.step()
        self.assertEqual(status["right_paddle_y"], BOTTOM_MARGIN)
        self.assertEqual(game.paddles[Side.RIGHT].speed, 0.0)
        self.assertTrue(status["right_paddle_margin_reached"])
        self.assertFalse(status["left_paddle_margin_reached"])

    def test_margin_flag_while_at_limit(self) -> None:
        """
        The margin flag stays true while the paddle rests at the limit and turns false on the
        tick the paddle leaves it.
        """
        game = PongGame()
        game.paddles[Side.LEFT].y = 0.0651
        game.queue_command(Side.LEFT, PaddleCommand.UP)
        self.assertTrue(game.step()["left_paddle_margin_reached"])
        self.assertTrue(game.step()["left_paddle_margin_reached"])
        game.queue_command(Side.LEFT, PaddleCommand.DOWN)
        status = game.step()
        self.assertFalse(status["left_paddle_margin_reached"])
        self.assertAlmostEqual(status["left_paddle_y"], TOP_MARGIN + 0.1 * DT)

    def test_clamping_resets_speed(self) -> None:
        """
        Holding up against the top margin builds no speed: each clamp sets it to 0, so the
        first down afterwards moves the paddle by +0.1·dt.
        """
        game = PongGame()
        game.paddles[Side.LEFT].y = TOP_MARGIN
        for _ in range(5):
            game.queue_command(Side.LEFT, PaddleCommand.FAST_UP)
        game.queue_command(Side.LEFT, PaddleCommand.DOWN)
        steps(game, 5)
        self.assertEqual(game.paddles[Side.LEFT].y, TOP_MARGIN)
        status = game.step()
        self.assertAlmostEqual(game.paddles[Side.LEFT].speed, 0.1)
        self.assertAlmostEqual(status["left_paddle_y"], TOP_MARGIN + 0.1 * DT)


class WallTests(SynchronousTestCase):
    def test_top_wall(self) -> None:
        """
        A ball moving up that touches the top wall (y − radius ≤ 0) has vy flipped and the
        tick reports a bounce.
        """
        game = game_with_ball(0.5, 0.021, SERVE_VX, -SERVE_VY)  # to 0.021 − 0.0055
        status = game.step()
        self.assertEqual(game.ball.vy, SERVE_VY)
        self.assertEqual(game.ball.vx, SERVE_VX)
        self.assertTrue(status["has_bounced"])

    def test_bottom_wall(self) -> None:
        """
        A ball moving down that touches the bottom wall (y + radius ≥ 1) has vy flipped.
        """
        game = game_with_ball(0.5, 0.979, SERVE_VX, SERVE_VY)  # to 0.979 + 0.0055
        status = game.step()
        self.assertEqual(game.ball.vy, -SERVE_VY)
        self.assertTrue(status["has_bounced"])

    def test_no_bounce_moving_away(self) -> None:
        """
        A ball still touching a wall but moving away from it is not bounced back into it.
        """
        for y, vy in [(0.01, SERVE_VY), (0.99, -SERVE_VY)]:
            game = game_with_ball(0.5, y, SERVE_VX, vy)
            status = game.step()
            self.assertEqual(game.ball.vy, vy)
            self.assertFalse(status["has_bounced"])

    def test_bounce_then_leave(self) -> None:
        """
        After a bounce the ball keeps moving away from the wall on the following ticks, even
        while it still touches it.
        """
        game = game_with_ball(0.5, 0.005, SERVE_VX, -SERVE_VY)  # to y = −0.0005
        self.assertTrue(game.step()["has_bounced"])
        y = game.ball.y
        for _ in range(3):  # y + 0.0055 each tick, still within a radius of the wall
            self.assertFalse(game.step()["has_bounced"])
            self.assertEqual(game.ball.vy, SERVE_VY)
            self.assertGreater(game.ball.y, y)
            y = game.ball.y

    def test_no_bounce_in_open_field(self) -> None:
        """
        A tick in which the ball touches nothing reports no bounce.
        """
        self.assertFalse(PongGame().step()["has_bounced"])


class PaddleHitTests(SynchronousTestCase):
    def test_right_paddle(self) -> None:
        """
        A ball moving right that reaches x ≥ 0.97 within 0.085 of the right paddle's centre
        flips vx and takes vy = ball.y − paddle.y, with its position left as it is.
        """
        game = game_with_ball(0.968, 0.55, SERVE_VX, 0.0)  # to x = 0.971
        status = game.step()
        self.assertEqual(game.ball.vx, -SERVE_VX)
        self.assertAlmostEqual(game.ball.vy, 0.55 - 0.5)
        self.assertAlmostEqual(status["ball_x"], 0.968 + SERVE_VX * DT)
        self.assertTrue(status["has_bounced"])

    def test_left_paddle(self) -> None:
        """
        A ball moving left that reaches x ≤ 0.03 within 0.085 of the left paddle's centre
        flips vx; a ball above the paddle's centre leaves upwards.
        """
        game = game_with_ball(0.032, 0.45, -SERVE_VX, 0.0)  # to x = 0.029
        status = game.step()
        self.assertEqual(game.ball.vx, SERVE_VX)
        self.assertAlmostEqual(game.ball.vy, 0.45 - 0.5)
        self.assertTrue(status["has_bounced"])

    def test_paddle_speed_adds_spin(self) -> None:
        """
        The paddle's speed after this tick's command is added to vy: a paddle moving down at
        0.1, now at 0.5 + 0.1·dt, sends the ball off with vy = (ball.y − paddle.y) + 0.1.
        """
        game = game_with_ball(0.968, 0.52, SERVE_VX, 0.0)
        game.queue_command(Side.RIGHT, PaddleCommand.DOWN)
        game.step()
        self.assertAlmostEqual(game.ball.vy, (0.52 - (0.5 + 0.1 * DT)) + 0.1)

    def test_miss(self) -> None:
        """
        A ball more than 0.085 from the paddle's centre passes it, velocity unchanged.
        """
        game = game_with_ball(0.968, 0.59, SERVE_VX, 0.0)
        status = game.step()
        self.assertEqual((game.ball.vx, game.ball.vy), (SERVE_VX, 0.0))
        self.assertFalse(status["has_bounced"])

    def test_edge_of_paddle(self) -> None:
        """
        The reach is 0.085 either side of the paddle's centre, above and below alike.
        """
        for y, hit in [(0.42, True), (0.58, True), (0.41, False), (0.59, False)]:
            game = game_with_ball(0.968, y, SERVE_VX, 0.0)
            game.step()
            self.assertEqual(game.ball.vx < 0, hit, y)

    def test_not_yet_in_reach(self) -> None:
        """
        A ball level with the paddle but short of x = 0.97 is not hit.
        """
        game = game_with_ball(0.96, 0.5, SERVE_VX, 0.0)  # to x = 0.963
        game.step()
        self.assertEqual(game.ball.vx, SERVE_VX)

    def test_no_double_bounce(self) -> None:
        """
        A ball hit deep in the paddle zone is not hit again on the following ticks while it is
        still within x ≥ 0.97 and level with the paddle: it keeps heading left.
        """
        game = game_with_ball(0.985, 0.5, SERVE_VX, 0.0)
        self.assertTrue(game.step()["has_bounced"])
        for _ in range(4):
            status = game.step()
            self.assertGreaterEqual(game.ball.x, 0.97)
            self.assertEqual(game.ball.vx, -SERVE_VX)
            self.assertFalse(status["has_bounced"])

    def test_only_the_paddle_ahead_hits(self) -> None:
        """
        Within either paddle's zone, a ball moving away from that paddle is not hit by it.
        """
        for x, vx in [(0.02, SERVE_VX), (0.98, -SERVE_VX)]:
            game = game_with_ball(x, 0.5, vx, 0.0)
            status = game.step()
            self.assertEqual(game.ball.vx, vx)
            self.assertFalse(status["has_bounced"])

    def test_corner_hit_aimed_at_wall(self) -> None:
        """
        A paddle hit that sends a ball touching a wall back into it is bounced off the wall in
        the same tick: the ball leaves the corner.
        """
        game = game_with_ball(0.968, 0.015, SERVE_VX, 0.0)
        game.paddles[Side.RIGHT].y = TOP_MARGIN
        game.step()
        self.assertEqual(game.ball.vx, -SERVE_VX)
        self.assertAlmostEqual(game.ball.vy, TOP_MARGIN - 0.015)


class ScoringTests(SynchronousTestCase):
    def test_right_goal_line(self) -> None:
        """
        A ball past x > 1 is a goal for the left player (the host); the ball is re-served from
        the centre toward the right player, who conceded, at (+0.3, +0.55).
        """
        game = game_with_ball(0.999, 0.9, SERVE_VX, 0.0)  # to x = 1.002
        game.step()
        self.assertEqual(game.scores, {Side.LEFT: 1, Side.RIGHT: 0})
        self.assertEqual(game.ball, Ball(x=0.5, y=0.5, vx=SERVE_VX, vy=SERVE_VY))

    def test_left_goal_line(self) -> None:
        """
        A ball past x < 0 is a goal for the right player (the challenger); the ball is
        re-served toward the left player, who conceded, at (−0.3, +0.55).
        """
        game = game_with_ball(0.001, 0.1, -SERVE_VX, 0.0)  # to x = −0.002
        game.step()
        self.assertEqual(game.scores, {Side.LEFT: 0, Side.RIGHT: 1})
        self.assertEqual(game.ball, Ball(x=0.5, y=0.5, vx=-SERVE_VX, vy=SERVE_VY))

    def test_on_the_line_is_no_goal(self) -> None:
        """
        A ball whose centre is still within [0, 1] has not scored, even past the paddle.
        """
        for x, vx in [(0.9965, SERVE_VX), (0.0035, -SERVE_VX)]:  # to 0.9995 and 0.0005
            game = game_with_ball(x, 0.9, vx, 0.0)
            game.step()
            self.assertEqual(game.scores, {Side.LEFT: 0, Side.RIGHT: 0}, x)

    def test_status_after_goal(self) -> None:
        """
        The status of the tick of a goal shows the new score and the re-served ball at the
        centre.
        """
        game = game_with_ball(0.001, 0.1, -SERVE_VX, 0.0)
        status = game.step()
        self.assertEqual((status["left_score"], status["right_score"]), (0, 1))
        self.assertEqual((status["ball_x"], status["ball_y"]), (0.5, 0.5))

    def test_serve_after_goal_moves_toward_conceder(self) -> None:
        """
        On the tick after a goal the re-served ball moves from the centre toward the player
        who conceded.
        """
        game = game_with_ball(0.001, 0.1, -SERVE_VX, 0.0)
        game.step()
        status = game.step()
        self.assertAlmostEqual(status["ball_x"], 0.5 - SERVE_VX * DT)
        self.assertAlmostEqual(status["ball_y"], 0.5 + SERVE_VY * DT)

    def test_ball_reaches_goal(self) -> None:
        """
        Left alone, the first serve crosses the challenger's goal line, a goal for the host,
        and the next serve goes to the challenger again.
        """
        game = PongGame()
        game.paddles[Side.RIGHT].y = 0.1  # far from where the ball arrives
        for _ in range(1000):
            game.step()
            if game.scores[Side.LEFT]:
                break
        self.assertEqual(game.scores, {Side.LEFT: 1, Side.RIGHT: 0})
        self.assertEqual(game.ball.vx, SERVE_VX)


class EndOfMatchTests(SynchronousTestCase):
    def test_first_to_five(self) -> None:
        """
        The first player to 5 goals wins: at 4 the match goes on, at 5 it is over.
        """
        game = PongGame()
        for _ in range(4):
            score_goal(game, Side.RIGHT)
        score_goal(game, Side.LEFT)
        self.assertFalse(game.finished)
        self.assertIsNone(game.winner)
        score_goal(game, Side.RIGHT)
        self.assertTrue(game.finished)
        self.assertIs(game.winner, Side.RIGHT)
        self.assertEqual(game.scores, {Side.LEFT: 1, Side.RIGHT: 5})

    def test_no_step_after_end(self) -> None:
        """
        A finished match cannot be stepped.
        """
        game = PongGame()
        for _ in range(5):
            score_goal(game, Side.LEFT)
        self.assertRaises(RuntimeError, game.step)

    def test_match_time_whole_seconds(self) -> None:
        """
        match_time is game time (steps × dt) in whole seconds, rounded down.
        """
        game = PongGame(STILL_BALL)
        steps(game, 99)
        self.assertEqual(game.status()["match_time"], 0)
        game.step()
        self.assertEqual(game.status()["match_time"], 1)
        steps(game, 99)
        self.assertEqual(game.status()["match_time"], 1)
        game.step()
        self.assertEqual(game.status()["match_time"], 2)

    def test_match_time_follows_dt(self) -> None:
        """
        With dt = 0.3 s four steps make 1.2 s of game time: match_time 1.
        """
        game = PongGame(PongRules(serve_vx=0.0, serve_vy=0.0, dt=0.3))
        steps(game, 4)
        self.assertEqual(game.status()["match_time"], 1)

    def test_leader_wins_at_time_limit(self) -> None:
        """
        The leader wins on the tick that completes 300 s of game time (30000 ticks of 0.01 s),
        not one tick before.
        """
        game = PongGame(STILL_BALL)
        score_goal(game, Side.LEFT)
        score_goal(game, Side.LEFT)
        score_goal(game, Side.RIGHT)
        steps(game, 30000 - 3 - 1)
        self.assertFalse(game.finished)
        self.assertEqual(game.status()["match_time"], 299)
        status = game.step()
        self.assertTrue(game.finished)
        self.assertIs(game.winner, Side.LEFT)
        self.assertEqual(status["match_time"], 300)
        self.assertFalse(status["sudden_death"])

    def test_tie_at_time_limit_is_sudden_death(self) -> None:
        """
        Level at 300 s, the match goes on with sudden_death true from that tick.
        """
        game = PongGame(STILL_BALL)
        score_goal(game, Side.LEFT)
        score_goal(game, Side.RIGHT)
        steps(game, 30000 - 2 - 1)
        self.assertFalse(game.status()["sudden_death"])
        status = game.step()
        self.assertTrue(status["sudden_death"])
        self.assertFalse(game.finished)
        steps(game, 500)
        self.assertTrue(game.status()["sudden_death"])
        self.assertFalse(game.finished)

    def test_sudden_death_next_goal_wins(self) -> None:
        """
        In sudden death the next goal wins, whatever the score, and the final status still
        says sudden death.
        """
        for scorer in Side:
            game = PongGame(STILL_BALL)
            steps(game, 30000)
            self.assertTrue(game.sudden_death)
            score_goal(game, scorer)
            self.assertTrue(game.finished)
            self.assertIs(game.winner, scorer)
            self.assertEqual(game.scores, {scorer: 1, scorer.opponent: 0})
            self.assertTrue(game.status()["sudden_death"])

    def test_time_limit_from_rules(self) -> None:
        """
        The time limit is a rule: with a 2 s limit and dt = 0.5 the leader wins on the fourth
        tick.
        """
        game = PongGame(PongRules(serve_vx=0.0, serve_vy=0.0, dt=0.5, time_limit=2.0))
        score_goal(game, Side.RIGHT)
        steps(game, 2)
        self.assertFalse(game.finished)
        game.step()
        self.assertIs(game.winner, Side.RIGHT)


class StatusFrameTests(SynchronousTestCase):
    def test_positions_rounded(self) -> None:
        """
        Paddle and ball positions are rounded to 5 decimals.
        """
        game = game_with_ball(0.123456789, 0.987654321, 0.0, 0.0)
        game.paddles[Side.LEFT].y = 0.333333333
        game.paddles[Side.RIGHT].y = 0.666666666
        status = game.status()
        self.assertEqual((status["ball_x"], status["ball_y"]), (0.12346, 0.98765))
        self.assertEqual((status["left_paddle_y"], status["right_paddle_y"]), (0.33333, 0.66667))

    def test_scores_in_status(self) -> None:
        """
        The status carries each side's score under its own key.
        """
        game = PongGame(STILL_BALL)
        score_goal(game, Side.LEFT)
        score_goal(game, Side.LEFT)
        score_goal(game, Side.RIGHT)
        status = game.status()
        self.assertEqual((status["left_score"], status["right_score"]), (2, 1))
