"""Call records: SQLite (WAL) or PostgreSQL through SQLAlchemy 2 async, schema by Alembic.

The call code records through a ``Recorder`` (non-blocking; one writer task commits each record on its own), the
API reads through ``Recorder.session()`` and ``repository``. ``CallRecording`` writes an optional stereo WAV.
"""

from hanmadi.store.recording import CallRecording, recording_path
from hanmadi.store.records import CallEnd, CallStart, TurnRecord, mask_number
from hanmadi.store.writer import Recorder

__all__ = ["CallEnd", "CallRecording", "CallStart", "Recorder", "TurnRecord", "mask_number", "recording_path"]
