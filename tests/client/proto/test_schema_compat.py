"""Our copy of the `tinker_public` schema against the official SDK's, field by field.

0.38.0 (the newest SDK): the same file descriptor exactly (every message, field name, number,
type, label, oneof and map entry). 0.24.1: every field it knows has the same number, type and
label in ours (0.38 renamed a message and a field, which the bytes do not carry, and added fields).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, text_format

from cookbook.client.proto import schema

from .official_sdk import OfficialSdk, file_descriptor

_Message = descriptor_pb2.DescriptorProto


def _ours() -> descriptor_pb2.FileDescriptorProto:
    ours = descriptor_pb2.FileDescriptorProto()
    schema.FILE_DESCRIPTOR.CopyToProto(ours)
    return ours


def test_table_builds_the_same_descriptor_it_loads() -> None:
    assert _ours() == schema.file_descriptor_proto()


def test_schema_equals_the_newest_official_schema(sdk_newest: OfficialSdk) -> None:
    theirs = file_descriptor(sdk_newest.site)
    ours = _ours()
    for name in {m.name for m in theirs.message_type} | {m.name for m in ours.message_type}:
        assert text_format.MessageToString(_message(ours, name)) == text_format.MessageToString(
            _message(theirs, name)
        )
    assert ours == theirs


def _message(file: descriptor_pb2.FileDescriptorProto, name: str) -> _Message | None:
    return next((m for m in file.message_type if m.name == name), None)


def _resolve(file: descriptor_pb2.FileDescriptorProto, type_name: str) -> _Message:
    """A message by its full name `.package.Outer[.Nested]`."""
    outer, *nested = type_name.removeprefix(f".{file.package}.").split(".")
    message = _message(file, outer)
    assert message is not None, type_name
    for part in nested:
        message = next(m for m in message.nested_type if m.name == part)
    return message


def _check_reads(
    ours_file: descriptor_pb2.FileDescriptorProto,
    ours: _Message,
    theirs_file: descriptor_pb2.FileDescriptorProto,
    theirs: _Message,
    path: str,
    seen: set[str],
) -> None:
    """Every field of `theirs` is in `ours` with the same number, type and label, recursively."""
    if path in seen:
        return
    seen.add(path)
    by_number = {f.number: f for f in ours.field}
    for field in theirs.field:
        mine = by_number.get(field.number)
        where = f"{path}.{field.name} (#{field.number})"
        assert mine is not None, f"{where} is missing from our schema"
        assert (mine.type, mine.label) == (field.type, field.label), where
        if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
            _check_reads(
                ours_file,
                _resolve(ours_file, mine.type_name),
                theirs_file,
                _resolve(theirs_file, field.type_name),
                f"{path}.{field.name}",
                seen,
            )
        elif field.type == descriptor_pb2.FieldDescriptorProto.TYPE_ENUM:
            assert mine.type_name == field.type_name, where


def test_schema_reads_everything_the_installed_official_schema_writes(sdk_installed: OfficialSdk) -> None:
    theirs = file_descriptor(sdk_installed.site)
    ours = _ours()
    assert theirs.package == ours.package
    for enum in theirs.enum_type:
        mine = next(e for e in ours.enum_type if e.name == enum.name)
        assert {(v.name, v.number) for v in enum.value} <= {(v.name, v.number) for v in mine.value}
    seen: set[str] = set()
    for message in theirs.message_type:
        mine = _message(ours, message.name)
        if mine is not None:  # renamed ones are reached through the fields that hold them
            _check_reads(ours, mine, theirs, message, message.name, seen)
    assert len(seen) >= len(theirs.message_type)
