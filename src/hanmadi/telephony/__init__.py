"""hanmadi.telephony: the phone edge.

- ``audio``: mu-law <-> PCM16 (numpy lookup tables), resampling, 20 ms framing;
- ``twilio``: the Media Streams protocol as a serializer, signatures, one-time stream tokens, TwiML;
- ``caller``: the simulated caller, speaking the same protocol from Twilio's side (import it explicitly: it pulls in
  httpx and websockets).
"""
