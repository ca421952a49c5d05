"""
Python clients for gameproto servers, for bots and tests.

- L{gameproto.client.match}: a match WebSocket (C{/ws/game/{id}/?role=...}) as a
  queue of frames you await, with helpers to send commands;
- L{gameproto.client.arena}: an arena player or controller, with the five commands;
- L{gameproto.client.processor}: a processor run (context, code, output, engine
  calls answered by a callback);
- L{gameproto.client.rest}: the REST calls a bot needs (sign up, token, create a
  match, read a user).

The WebSocket clients share L{gameproto.client.base.JSONClient}.  All run on any
Twisted reactor and take it as an argument.  A base URL may carry the prefix a server is
mounted under (C{ws://HOST:PORT/game}).  A host waiting for its challenger::

    from twisted.internet import defer
    from twisted.internet.task import react
    from gameproto.client import rest, match

    async def main(reactor):
        api = rest.RestClient(reactor, "http://127.0.0.1:8000")
        token = await api.token("ann", "password1")
        match_id = (await api.as_user(token).create_match())["id"]
        host = await match.connect(reactor, "ws://127.0.0.1:8000", token, match_id, "host")
        print(await host.next_frame())       # {"status": "success", "code": 0}
        lobby = await host.wait_for(lambda f: f.get("challenger_ready"))
        host.command("start_match")
        end = await host.wait_for_type("end")

    react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""
