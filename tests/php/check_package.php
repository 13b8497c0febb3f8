<?php
/**
 * composer.json as a package: the keys Packagist needs, and a PSR-4 layout
 * that autoloads. Every file under the mapped folder but the loader
 * php/Groupcast.php declares exactly one class, named after the file, in
 * the mapped namespace; a PSR-4 autoloader built from composer.json alone
 * (no require of php/Groupcast.php) finds every one of them.
 *
 *   php tests/php/check_package.php
 */

declare(strict_types=1);

$root = dirname(__DIR__, 2);
$failures = [];
$fail = function (string $why) use (&$failures): void {
    $failures[] = $why;
};

$composer = json_decode(file_get_contents("$root/composer.json"), true, 16, JSON_THROW_ON_ERROR);
$expect = [
    'name' => 'groupcast/groupcast',
    'type' => 'library',
    'license' => ['MIT', 'Apache-2.0'],
    'require' => ['php' => '>=8.1', 'ext-ffi' => '*'],
    'autoload' => ['psr-4' => ['Groupcast\\' => 'php/']],
];
foreach ($expect as $key => $value) {
    if (($composer[$key] ?? null) !== $value) {
        $fail("composer.json: $key is " . json_encode($composer[$key] ?? null) . ', expected ' . json_encode($value));
    }
}
if (!is_string($composer['description'] ?? null) || $composer['description'] === '') {
    $fail('composer.json: no description');
}

$classes = [];
foreach ($composer['autoload']['psr-4'] as $prefix => $dir) {
    foreach (glob("$root/$dir*.php") as $file) {
        $tokens = token_get_all(file_get_contents($file));
        $namespace = '';
        $declared = [];
        foreach ($tokens as $i => $token) {
            if (!is_array($token)) {
                continue;
            }
            if ($token[0] === T_NAMESPACE) {
                $namespace = $tokens[$i + 2][1] ?? '';
            }
            if (in_array($token[0], [T_CLASS, T_INTERFACE, T_TRAIT, T_ENUM], true)
                && ($tokens[$i - 1][0] ?? null) !== T_DOUBLE_COLON
            ) {
                $declared[] = $namespace . '\\' . $tokens[$i + 2][1];
            }
        }
        $expected = $prefix . basename($file, '.php');
        if ($declared === []) {
            continue; // the loader, php/Groupcast.php: no class
        }
        if ($declared !== [$expected]) {
            $fail(basename($file) . ' declares ' . json_encode($declared) . ", expected only $expected");
        }
        $classes[] = $expected;
    }
}
if (count($classes) < 5) {
    $fail('only ' . count($classes) . ' classes found');
}

// Autoload every class with only composer.json's mapping.
spl_autoload_register(function (string $class) use ($composer, $root): void {
    foreach ($composer['autoload']['psr-4'] as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = "$root/$dir" . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
        }
    }
});
foreach ($classes as $class) {
    if (!class_exists($class)) {
        $fail("$class does not autoload");
    }
}

foreach ($failures as $why) {
    fwrite(STDERR, "check_package.php: $why\n");
}
if ($failures !== []) {
    exit(1);
}
echo 'check_package.php: composer.json and ' . count($classes) . " PSR-4 classes ok\n";
