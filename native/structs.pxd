# msgspec Struct and ``__slots__`` fields read and written in place, by their offsets (native/entry.pyx,
# reports.pyx, orderpath.pyx).
#
# A msgspec Struct keeps each field in an object slot, as ``__slots__`` does, described on its class
# by a member descriptor: reading one through the attribute protocol looks the name up in the type
# first, about 50 ns from C; read at its offset it is a load. `field_offset` finds the offset once,
# from the descriptor, and refuses anything else. The callers read and write only instances of the
# exact class whose offsets they took (``type(obj) is cls``), of classes made with ``gc=False``
# (writing a field then needs no GC bookkeeping, as msgspec's own setter does none) or plain
# classes with ``__slots__`` (whose fields are the same object slots), and write only fields of
# classes that are not frozen.
#
# Everything here is `cdef inline`: compiled into each module that cimports it.

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF


cdef extern from "Python.h":
    ctypedef struct MemberDef "PyMemberDef":
        int type
        Py_ssize_t offset
    ctypedef struct MemberDescr "PyMemberDescrObject":
        MemberDef* d_member


cdef enum:
    OBJECT_EX = 16           # Py_T_OBJECT_EX: an object slot; a missing value is an AttributeError


cdef inline Py_ssize_t field_offset(object cls, str name) except -1:
    """The offset of field ``name`` in an instance of ``cls`` (a msgspec Struct class); TypeError
    unless it is an object slot."""
    for base in cls.__mro__:
        descriptor = base.__dict__.get(name)
        if descriptor is not None:
            break
    else:
        raise TypeError(f"{cls.__name__} has no field {name!r}")
    if type(descriptor).__name__ != "member_descriptor" or (<MemberDescr*>descriptor).d_member.type != OBJECT_EX:
        raise TypeError(f"{cls.__name__}.{name} is not an object slot")
    return (<MemberDescr*>descriptor).d_member.offset


cdef inline void check_fields(object cls, str tag, tuple names, str module) except *:
    """TypeError unless ``cls`` (a msgspec Struct class) is tagged ``tag`` and has the fields
    ``names`` in order: the message ``module`` reads or writes by position was changed."""
    if cls.__struct_fields__ != names or cls.__struct_config__.tag != tag:
        raise TypeError(f"{cls.__name__} is not the message native/{module} reads or writes: rebuild it")


cdef inline PyObject* borrowed_field(object instance, Py_ssize_t offset) except NULL:
    """The field at ``offset`` of ``instance``, borrowed: valid while ``instance`` holds it
    (AttributeError if it was never set)."""
    cdef PyObject* value = (<PyObject**>(<char*><PyObject*>instance + offset))[0]
    if value == NULL:
        raise AttributeError(f"{type(instance).__name__} field at offset {offset} is not set")
    return value


cdef inline object field(object instance, Py_ssize_t offset):
    """The field at ``offset`` of ``instance`` (AttributeError if it was never set)."""
    return <object>borrowed_field(instance, offset)


cdef inline void set_field(object instance, Py_ssize_t offset, object value) noexcept:
    """Set the field at ``offset`` of ``instance`` to ``value``."""
    cdef PyObject** slot = <PyObject**>(<char*><PyObject*>instance + offset)
    cdef PyObject* old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject*>value
    Py_XDECREF(old)
