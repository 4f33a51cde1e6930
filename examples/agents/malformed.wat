;; malformed.wat: returns output that breaks the ABI; the state picks how.
;;   0 (or null): not JSON    1: not UTF-8    2: a bad status    3: outbox entry without "to"
;;   4: a JSON array          5: output pointer outside memory   6: a 4 GiB output length
;; Capabilities: none.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "\"state\":")  ;; 8 bytes
  (data (i32.const 64) "{\"state\": oops")                        ;; 14 bytes
  (data (i32.const 96) "{\"state\":\"\ff\fe\"}")                  ;; 14 bytes
  (data (i32.const 128) "{\"state\":1,\"status\":\"sleeping\"}")  ;; 31 bytes
  (data (i32.const 160) "{\"state\":1,\"outbox\":[{\"payload\":2}]}") ;; 36 bytes
  (data (i32.const 208) "[1,2,3]")                                   ;; 7 bytes
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

  ;; the integer state of the step input (0 for null)
  (func $state (param $in i32) (param $len i32) (result i32)
    (local $at i32)
    (local.set $at (call $rfind (local.get $in) (local.get $len) (i32.const 16) (i32.const 8)))
    (if (i32.lt_s (local.get $at) (i32.const 0)) (then (return (i32.const 0))))
    (i32.wrap_i64 (call $atoi (i32.add (local.get $at) (i32.const 8)))))

  (func $packed (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func (export "step") (param $in i32) (param $len i32) (result i64)
    (local $how i32)
    (local.set $how (call $state (local.get $in) (local.get $len)))
    (if (i32.eq (local.get $how) (i32.const 1)) (then (return (call $packed (i32.const 96) (i32.const 14)))))
    (if (i32.eq (local.get $how) (i32.const 2)) (then (return (call $packed (i32.const 128) (i32.const 31)))))
    (if (i32.eq (local.get $how) (i32.const 3)) (then (return (call $packed (i32.const 160) (i32.const 36)))))
    (if (i32.eq (local.get $how) (i32.const 4)) (then (return (call $packed (i32.const 208) (i32.const 7)))))
    (if (i32.eq (local.get $how) (i32.const 5)) (then (return (call $packed (i32.const 65500) (i32.const 100)))))
    (if (i32.eq (local.get $how) (i32.const 6)) (then (return (call $packed (i32.const 0) (i32.const -1)))))
    (call $packed (i32.const 64) (i32.const 14))))
