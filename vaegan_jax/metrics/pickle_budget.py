"""The work a pickle may ask for, counted before a byte of it is unpickled (SECURITY.md).

A restricted unpickler (pth.py) stops a pickle from running code, but not from asking for
unbounded work with the plain containers it may build: a 1,301-byte pickle of 64 nested tuples,
each holding its predecessor twice through the memo, is a dict key whose hash visits 2^64
tuples, and printing it in a message never ends either. `check` reads the pickle's opcodes with
pickletools (nothing is built) and follows what each would build as sizes only: every
container's size once expanded (shared parts counted each time they are shared) and depth. It
refuses, before anything is unpickled:
- an opcode outside the few that state dicts use (no object construction but the allowed
  callables, no extension registry);
- a global outside the allowlist;
- a memo index past the opcodes read (the C unpickler sizes its memo array by the index);
- more than MAX_OPCODES opcodes, a value of more than MAX_NODES nodes or MAX_DEPTH levels, or
  more than MAX_WORK nodes added to containers in all;
- a container changed after it was put inside another (which would hide its growth).

So whatever the unpickler then builds, hashes or prints is bounded by these numbers; a real
state dict (pytorch-fid's Inception: 1,052 opcodes per 100 tensors) is far inside them.
"""
from __future__ import annotations

import dataclasses
import pickletools
from typing import BinaryIO, Iterable

MAX_OPCODES = 2_000_000
MAX_NODES = 1_000_000
MAX_WORK = 10_000_000
MAX_DEPTH = 32
MAX_TEXT = 256              # a global's module and name, as STACK_GLOBAL reads them


class PickleTooCostly(ValueError):
  """A pickle that asks for more work than a state dict needs, or for something it never holds.
  """


class PickleUnreadable(ValueError):
  """A pickle whose opcodes cannot be read: damaged or cut short."""


@dataclasses.dataclass
class _Value:
  """What an opcode would push, as sizes: its nodes once expanded and its depth."""
  size: int = 1
  depth: int = 0
  container: bool = False
  frozen: bool = False        # inside another container: its size is counted there already
  text: str | None = None     # a short string's value, for STACK_GLOBAL


MARK = object()
ATOMS = frozenset({
    'NONE', 'NEWTRUE', 'NEWFALSE', 'INT', 'BININT', 'BININT1', 'BININT2', 'LONG', 'LONG1',
    'LONG4', 'FLOAT', 'BINFLOAT', 'BINBYTES', 'SHORT_BINBYTES', 'BINBYTES8', 'STRING',
    'BINSTRING', 'SHORT_BINSTRING', 'UNICODE', 'BINUNICODE', 'SHORT_BINUNICODE', 'BINUNICODE8'})
EMPTY_CONTAINERS = frozenset({'EMPTY_DICT', 'EMPTY_LIST', 'EMPTY_TUPLE', 'EMPTY_SET'})
IGNORED = frozenset({'PROTO', 'FRAME'})
PUTS = frozenset({'PUT', 'BINPUT', 'LONG_BINPUT'})
GETS = frozenset({'GET', 'BINGET', 'LONG_BINGET'})


class _Machine:
  """The stack and memo of an unpickler, holding sizes instead of objects."""

  def __init__(self, allowed_globals: frozenset[tuple[str, str]]):
    self.allowed = allowed_globals
    self.stack: list = []
    self.memo: dict[int, _Value] = {}
    self.work = 0
    self.opcodes = 0

  # ---- the stack
  def pop(self) -> _Value:
    if not self.stack or self.stack[-1] is MARK:
      raise PickleTooCostly('it pops from an empty stack')
    return self.stack.pop()

  def pop_to_mark(self) -> list[_Value]:
    if MARK not in self.stack:
      raise PickleTooCostly('it closes a mark it never opened')
    index = len(self.stack) - 1 - self.stack[::-1].index(MARK)
    items = self.stack[index + 1:]
    del self.stack[index:]
    return items

  def top(self) -> _Value:
    if not self.stack or self.stack[-1] is MARK or not self.stack[-1].container:
      raise PickleTooCostly('it adds to something that is not a container')
    return self.stack[-1]

  # ---- sizes
  def container(self, children: Iterable[_Value]) -> _Value:
    made = _Value(container=True, depth=1)
    for child in children:
      self.add(made, child)
    return made

  def add(self, target: _Value, child: _Value) -> None:
    """`child` put inside `target`: its nodes count in the target's, and as work."""
    if target.frozen:
      raise PickleTooCostly('it changes a container after putting it inside another')
    child.frozen = True
    target.size += child.size
    target.depth = max(target.depth, child.depth + 1)
    self.work += child.size
    if target.size > MAX_NODES or target.depth > MAX_DEPTH or self.work > MAX_WORK:
      raise PickleTooCostly(
          f'it builds a value of {target.size:,} nodes and {target.depth} levels ({self.work:,} '
          f'nodes in all), past the {MAX_NODES:,} nodes, {MAX_DEPTH} levels and {MAX_WORK:,} '
          f'nodes a state dict could need')

  def global_(self, module: str, name: str) -> _Value:
    if (module, name) not in self.allowed:
      raise PickleTooCostly(f'it asks to unpickle {module[:MAX_TEXT]}.{name[:MAX_TEXT]}, which a '
                            f'state dict does not hold')
    return _Value()

  # ---- one opcode
  def step(self, name: str, argument) -> None:
    self.opcodes += 1
    if self.opcodes > MAX_OPCODES:
      raise PickleTooCostly(f'it has more than {MAX_OPCODES:,} opcodes')
    if name in IGNORED:
      return
    if name in ATOMS:
      text = argument if isinstance(argument, str) and len(argument) <= MAX_TEXT else None
      self.stack.append(_Value(text=text))
    elif name in EMPTY_CONTAINERS:
      self.stack.append(_Value(container=True, depth=1))
    elif name == 'MARK':
      self.stack.append(MARK)
    elif name == 'POP':
      if not self.stack:
        raise PickleTooCostly('it pops from an empty stack')
      self.stack.pop()
    elif name == 'POP_MARK':
      self.pop_to_mark()
    elif name == 'DUP':
      self.stack.append(self.pop())
      self.stack.append(self.stack[-1])
    elif name in ('TUPLE', 'LIST', 'DICT'):
      self.stack.append(self.container(self.pop_to_mark()))
    elif name in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
      items = [self.pop() for _ in range(int(name[-1]))][::-1]
      self.stack.append(self.container(items))
    elif name == 'APPEND':
      child = self.pop()
      self.add(self.top(), child)
    elif name in ('APPENDS', 'ADDITEMS'):
      children = self.pop_to_mark()
      target = self.top()
      for child in children:
        self.add(target, child)
    elif name == 'SETITEM':
      value, key = self.pop(), self.pop()
      target = self.top()
      self.add(target, key)
      self.add(target, value)
    elif name == 'SETITEMS':
      items = self.pop_to_mark()
      if len(items) % 2:
        raise PickleTooCostly('it sets a key without a value')
      target = self.top()
      for child in items:
        self.add(target, child)
    elif name in PUTS or name == 'MEMOIZE':
      index = len(self.memo) if name == 'MEMOIZE' else argument
      if not isinstance(index, int) or not 0 <= index <= self.opcodes:
        raise PickleTooCostly(f'it stores at memo index {index!r}, past the opcodes read')
      if not self.stack or self.stack[-1] is MARK:
        raise PickleTooCostly('it stores an empty stack in the memo')
      self.memo[index] = self.stack[-1]
    elif name in GETS:
      if argument not in self.memo:
        raise PickleTooCostly(f'it reads memo index {argument!r}, which it never stored')
      self.stack.append(self.memo[argument])
    elif name == 'GLOBAL':
      module, _, attribute = str(argument).partition(' ')
      self.stack.append(self.global_(module, attribute))
    elif name == 'STACK_GLOBAL':
      attribute, module = self.pop(), self.pop()
      if module.text is None or attribute.text is None:
        raise PickleTooCostly('it names a global by something other than two short strings')
      self.stack.append(self.global_(module.text, attribute.text))
    elif name == 'REDUCE':
      arguments, function = self.pop(), self.pop()
      self.stack.append(self.container([function, arguments]))
    elif name == 'BUILD':
      state = self.pop()
      self.add(self.top(), state)
    elif name in ('BINPERSID', 'PERSID'):
      persistent = self.pop() if name == 'BINPERSID' else _Value()
      made = self.container([persistent])
      made.container = False              # a storage: nothing is added to it
      self.stack.append(made)
    else:
      raise PickleTooCostly(f'it uses the opcode {name}, which a state dict does not')


def check(stream: BinaryIO, allowed_globals: frozenset[tuple[str, str]]) -> None:
  """PickleTooCostly unless the pickle at `stream`'s position stays within the budget above;
  the stream is left at the position where it started, for the unpickler."""
  start = stream.tell()
  machine = _Machine(allowed_globals)
  try:
    for opcode, argument, _ in pickletools.genops(stream):
      if opcode.name == 'STOP':
        break
      machine.step(opcode.name, argument)
    else:
      raise PickleUnreadable('it ends before its STOP opcode')
  except PickleTooCostly:
    raise
  except (ValueError, TypeError) as error:     # genops: an unknown opcode or a cut argument
    raise PickleUnreadable(f'its opcodes cannot be read ({str(error)[:200]})') from None
  finally:
    stream.seek(start)
