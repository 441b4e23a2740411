"""Fixed column names used by every DataFrame that enters or leaves llmkt.

External ids (``user_id``, ``item_id``) are whatever the source uses; internal ids
(``uid``, ``iid``) are dense integers ``1..N`` with ``0`` reserved for padding.
"""

USER = "user_id"
ITEM = "item_id"
TIMESTAMP = "timestamp"
RATING = "rating"
#: Position of an interaction in the source file; breaks timestamp ties stably.
ORDER = "order"
UID = "uid"
IID = "iid"

REQUIRED_INTERACTION_COLUMNS = (USER, ITEM)
