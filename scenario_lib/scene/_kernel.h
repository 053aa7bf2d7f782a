/* What the compiled kernels of scenario_lib.scene (_hand.c, _state.c) share: reaching the mjModel and
   mjData behind MuJoCo's Python objects, refusing a MuJoCo other than the one they were built against,
   and a module that exports one type. Include after Python.h and mujoco.h. */

#ifndef SCENARIO_LIB_SCENE_KERNEL_H
#define SCENARIO_LIB_SCENE_KERNEL_H

/* The C struct behind a mujoco.MjModel or mujoco.MjData (its `_address`); NULL with an exception set. */
static void *address_of(PyObject *object) {
  PyObject *address = PyObject_GetAttrString(object, "_address");
  if (address == NULL) return NULL;
  void *pointer = PyLong_AsVoidPtr(address);
  Py_DECREF(address);
  return pointer;
}

/* 0 if the loaded libmujoco is the release these headers are; else -1 with an ImportError naming the fix. */
static int require_built_mujoco(const char *kernel) {
  if (mj_version() == mjVERSION_HEADER) return 0;
  PyErr_Format(PyExc_ImportError,
               "scenario_lib's %s kernel was built against MuJoCo %d but MuJoCo %d is loaded; reinstall scenario-lib "
               "(`make install`, or `pip install -e .`) so it is built against the installed MuJoCo",
               kernel, mjVERSION_HEADER, mj_version());
  return -1;
}

/* The module of `definition`, exporting `type` as `name`. */
static PyObject *module_with_type(struct PyModuleDef *definition, PyTypeObject *type, const char *name) {
  if (PyType_Ready(type) < 0) return NULL;
  PyObject *module = PyModule_Create(definition);
  if (module == NULL) return NULL;
  if (PyModule_AddObjectRef(module, name, (PyObject *)type) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}

#endif
