;; counter.wat: counts its steps, and sends itself a message every step carrying the
;; count, a seeded random number and the logical time (ABI v1, docs/abi.md).
;;
;; state: the count so far (null at first). Output, at count n:
;;   {"state":n+1,"outbox":[{"to":"<own name>","payload":{"n":n,"now":T,"random":R}}],
;;    "status":"ready"}
;; Capabilities: random, now, log.
(module
  (import "host" "random" (func $random (result i64)))
  (import "host" "now" (func $now (result i64)))
  (import "host" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $out (mut i32) (i32.const 0))

  (data (i32.const 16) "\"state\":")                     ;; 8 bytes
  (data (i32.const 32) "{\"agent\":\"")                   ;; 10 bytes
  (data (i32.const 48) "{\"state\":")                     ;; 9 bytes
  (data (i32.const 64) ",\"outbox\":[{\"to\":\"")         ;; 18 bytes
  (data (i32.const 96) "\",\"payload\":{\"n\":")          ;; 17 bytes
  (data (i32.const 128) ",\"now\":")                      ;; 7 bytes
  (data (i32.const 144) ",\"random\":")                   ;; 10 bytes
  (data (i32.const 160) "}}],\"status\":\"ready\"}")     ;; 21 bytes
  (data (i32.const 192) "counter: counted one more step") ;; 30 bytes

  ;; alloc(size) -> ptr: bump allocation; 0 when memory cannot grow
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then (return (i32.const 0))))
    (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $ptr))

  ;; 1 when the n bytes at a and b are equal
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; address of the last occurrence of needle in hay, or -1
  (func $rfind (param $hay i32) (param $hlen i32) (param $needle i32) (param $nlen i32)
        (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $hlen) (local.get $nlen)) (then (return (i32.const -1))))
    (local.set $i (i32.sub (local.get $hlen) (local.get $nlen)))
    (loop $next
      (if (call $eq (i32.add (local.get $hay) (local.get $i)) (local.get $needle)
                    (local.get $nlen))
        (then (return (i32.add (local.get $hay) (local.get $i)))))
      (if (i32.eqz (local.get $i)) (then (return (i32.const -1))))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br $next))
    (i32.const -1))

  ;; the unsigned decimal number at p (0 when there is none, e.g. null)
  (func $atoi (param $p i32) (result i64)
    (local $v i64) (local $c i32)
    (block $done
      (loop $next
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 9)))
        (local.set $v (i64.add (i64.mul (local.get $v) (i64.const 10))
                               (i64.extend_i32_u (local.get $c))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $v))

  ;; append len bytes at src to the output
  (func $emit (param $src i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $src) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  ;; append v as an unsigned decimal number
  (func $emit_u64 (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 4000))  ;; scratch: digits are written backwards from 4000
    (loop $next
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i64.store8 (local.get $p) (i64.add (i64.rem_u (local.get $v) (i64.const 10))
                                          (i64.const 48)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $next (i64.ne (local.get $v) (i64.const 0))))
    (call $emit (local.get $p) (i32.sub (i32.const 4000) (local.get $p))))

  (func (export "step") (param $in i32) (param $len i32) (result i64)
    (local $count i64) (local $at i32) (local $name i32) (local $end i32) (local $start i32)
    ;; the count: the number after the last "state": (the top-level key sorts after inbox)
    (local.set $at (call $rfind (local.get $in) (local.get $len) (i32.const 16) (i32.const 8)))
    (if (i32.ge_s (local.get $at) (i32.const 0))
      (then (local.set $count (call $atoi (i32.add (local.get $at) (i32.const 8))))))
    ;; the agent's own name: the string after {"agent":" at the very start
    (if (i32.eqz (call $eq (local.get $in) (i32.const 32) (i32.const 10)))
      (then unreachable))
    (local.set $name (i32.add (local.get $in) (i32.const 10)))
    (local.set $end (local.get $name))
    (loop $scan  ;; up to the closing quote (names never contain escaped quotes here)
      (if (i32.ne (i32.load8_u (local.get $end)) (i32.const 34))
        (then (local.set $end (i32.add (local.get $end) (i32.const 1))) (br $scan))))
    ;; output buffer: room for the fixed text, the name and three 20-digit numbers
    (local.set $start (call $alloc (i32.add (i32.sub (local.get $end) (local.get $name))
                                            (i32.const 256))))
    (if (i32.eqz (local.get $start)) (then unreachable))
    (global.set $out (local.get $start))
    (call $emit (i32.const 48) (i32.const 9))
    (call $emit_u64 (i64.add (local.get $count) (i64.const 1)))
    (call $emit (i32.const 64) (i32.const 18))
    (call $emit (local.get $name) (i32.sub (local.get $end) (local.get $name)))
    (call $emit (i32.const 96) (i32.const 17))
    (call $emit_u64 (local.get $count))
    (call $emit (i32.const 128) (i32.const 7))
    (call $emit_u64 (call $now))
    (call $emit (i32.const 144) (i32.const 10))
    (call $emit_u64 (call $random))
    (call $emit (i32.const 160) (i32.const 21))
    (call $log (i32.const 192) (i32.const 30))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $start)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (global.get $out) (local.get $start))))))
