"""Every exception vidx raises, in one module (the lowest floor: every other imports it).

A :class:`VidxError` is bad input or a state of the index a user can act on: its message is one line
for the user, and the CLI turns it into exit status 2 (``vidx.jobs.cli``).  The modules that raise
each error import it from here; the names stay importable from those modules too.
"""

from __future__ import annotations


class VidxError(Exception):
    """Bad input or an index state a user can act on: one line for the user."""


class IndexError_(RuntimeError, VidxError):
    """The index folder is unusable (unreadable manifest, wrong version). (``indexing.store``)"""


class SourceError(RuntimeError, VidxError):
    """A video source cannot be read: a missing or unreadable path, an archive refused. (``workers.sources``)"""


class ConfigError(ValueError, VidxError):
    """A config file or --set value is wrong: an unknown key, a value of the wrong type or range. (``configs.config``)"""


class QueryError(ValueError, VidxError):
    """The query cannot be answered as asked (unknown person or video, bad range...). (``indexing.query``)"""


class FaceIndexError(RuntimeError, VidxError):
    """The FAISS index of face tracks cannot be read, written or searched as asked. (``indexing.faces_index``)"""


class MissingFile(IndexError_):
    """A file the table's log holds is gone from storage. (``indexing.tables``)"""


class ConcurrentCommit(IndexError_):
    """Another writer's commit conflicts with this one (or won too many races in a row). (``indexing.delta_log``)"""


class ProtocolError(IndexError_):
    """Another engine changed the table's protocol or properties so that vidx must not write (or read) it. (``indexing.delta_log``)"""


class AlreadyExists(FileExistsError):
    """A create found the object there (another writer made it first). (``indexing.objects``)"""


class Changed(RuntimeError):
    """A conditional replace found the object changed (or gone) since it was read. (``indexing.objects``)"""


class TruthError(ValueError, VidxError):
    """The truth file cannot be used (missing column, unknown video, bad times...). (``indexing.evaluate``)"""


class WriterBusy(IndexError_):
    """Another command is writing this index. (``indexing.lease``)"""


class LeaseLost(IndexError_):
    """This writer's lease was taken over: it must not commit. (``indexing.lease``)"""


class PeopleError(RuntimeError, VidxError):
    """A people command cannot be carried out (unknown person, nothing indexed...). (``indexing.people.files``)"""


class DlibFormatError(ValueError, VidxError):
    """A dlib model file is truncated, corrupt or not the kind of model expected. (``workers.dlib_format``)"""


class I3DWeightsError(RuntimeError, VidxError):
    """I3D's weights are missing, unreadable or not the converted checkpoint. (``workers.i3d``)"""


class TrainingDataError(ValueError, VidxError):
    """Training data for an action head is missing or malformed. (``workers.action_training``)"""


class WeightsError(RuntimeError, VidxError):
    """A model file is missing or unreadable; the message says which and how to get it. (``workers.face_weights``)"""


class RetinaFaceWeightsError(RuntimeError, VidxError):
    """RetinaFace's weights are missing, altered or unreadable; the message names the fix. (``workers.face_weights``)"""


class SFaceWeightsError(RuntimeError, VidxError):
    """The SFace ONNX file is missing, altered or unreadable; the message names the fix. (``workers.face_weights``)"""


class ActionWeightsError(RuntimeError, VidxError):
    """An action model's weights are missing and cannot be fetched, or are not that model's. (``workers.actions``)"""


class ImageReadError(ValueError, VidxError):
    """A photo could not be read; the message names the file and the reason. (``workers.images``)"""


class ArchiveRefused(SourceError):
    """An archive vidx will not open (not what its name says, or it would expand too far). (``workers.sources``)"""


class DecodeError(RuntimeError, VidxError):
    """A file cannot be decoded as video; the message says why. (``workers.decode``)"""


class EngineChoiceError(ValueError, VidxError):
    """A detector or embedder other than the index's was asked for a photo. (``jobs.engines``)"""


class RedactError(RuntimeError, VidxError):
    """Bad input to a redaction: one line for the user. (``jobs.redact``)"""


class IndexJobError(RuntimeError, VidxError):
    """The index job cannot start as asked (no videos, a missing bucket or weights, another embedder,
    GPU actors on a cluster without GPUs). (``jobs.index``)"""


class ServeError(RuntimeError, VidxError):
    """vidx serve cannot start: an index it cannot open, an address that needs a token."""


class DemoError(RuntimeError, VidxError):
    """vidx demo cannot make its media (scikit-image, which ships the photo, is not installed)."""
